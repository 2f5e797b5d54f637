"""
LDA with 1,203 classes over two gloo processes:

* the LDA predictor wrapped in DDP where worker 0's batches hold only frequent classes and
  worker 1's only rare ones (and, in one step, no foreground at all): both end with the same
  weights and the same alpha window, every parameter gets a gradient on every worker;
* ``train_net.py`` on the R-50 LDA LVIS config as two machines on one host
  (``--num-machines 2 --machine-rank 0|1 --dist-url tcp://127.0.0.1:PORT``, one process each),
  the way users go past one machine: 2 iterations at 128 px with 64 ROIs per image (not 800 px
  and 512 ROIs, for time: at 1,203 classes the mask head's cost grows with the ROIs) on a tiny
  LVIS v1-shaped dataset, random weights and a tiny learning rate.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from conftest import run_gloo_workers

ROOT = Path(__file__).resolve().parents[1]
C = 1203


def _ddp_worker(rank):
    from detectron2.layers import ShapeSpec
    from detectron2.utils.events import EventStorage
    from torch.nn.parallel import DistributedDataParallel

    from projects_lda import LDAFastRCNNOutputLayers, get_project_cfg
    from projects_lda.benchmark import lvis_rehearsal

    cfg = get_project_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = C
    freq = lvis_rehearsal.lvis_like_class_freq()
    torch.manual_seed(0)
    predictor = LDAFastRCNNOutputLayers(cfg, ShapeSpec(channels=1024))
    predictor.set_class_freq(freq)
    model = DistributedDataParallel(predictor)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    frequent = torch.nonzero(freq >= freq.quantile(0.9)).flatten()
    rare = torch.nonzero(freq <= freq.quantile(0.2)).flatten()
    g = torch.Generator().manual_seed(100 + rank)
    seen = set()
    with EventStorage(0):
        for step in range(3):
            props = lvis_rehearsal.synthetic_proposals(1, 256, C, freq, torch.device("cpu"), seed=step)
            pool = frequent if rank == 0 else rare
            n_fg = 0 if (rank == 1 and step == 1) else 64
            gt = torch.full((256,), C)
            gt[:n_fg] = pool[torch.randint(len(pool), (n_fg,), generator=g)]
            props[0].gt_classes = gt
            seen.update(gt[:n_fg].tolist())
            x = torch.rand(256, 1024, generator=g)
            losses = predictor.losses(model(x), props)
            opt.zero_grad()
            sum(losses.values()).backward()
            missing = [n for n, p in predictor.named_parameters() if p.grad is None]
            assert not missing, missing
            opt.step()
            assert all(torch.isfinite(v) for v in losses.values()), losses
    return {  # numpy: tensors would travel as shared memory the exiting worker takes away
        "weights": torch.cat([p.detach().flatten() for p in predictor.parameters()]).numpy(),
        "window": predictor.accuracy_window.counts.numpy(),
        "alpha": float(predictor.current_alpha()),
        "classes": seen,
    }


def test_ddp_lda_with_frequent_only_and_rare_only_workers():
    out = run_gloo_workers(_ddp_worker, world=2)
    assert not out[0]["classes"] & out[1]["classes"]  # disjoint classes on the two workers
    assert (out[0]["weights"] == out[1]["weights"]).all()
    assert (out[0]["window"] == out[1]["window"]).all()
    assert out[0]["alpha"] == out[1]["alpha"]
    assert out[0]["window"][:3, 2].tolist() == [128.0, 64.0, 128.0]  # fg counts summed over workers


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_net_as_two_machines_on_one_host(tmp_path):
    from projects_lda.data.lvis_shaped import generate_lvis_shaped

    paths = generate_lvis_shaped(str(tmp_path / "data"), "tiny", val_size=1, pool_size=4)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env["LDA_EXTRA_DATASETS"] = ";".join(
        f"mm_{s}:{paths[f'{s}_json']}:{paths['image_root']}" for s in ("train", "val")
    )
    port = _free_port()
    procs = []
    for rank in (0, 1):
        cmd = [
            sys.executable, str(ROOT / "train_net.py"), "--config-file",
            str(ROOT / "configs/LVISv1/lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml"),
            "--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank),
            "--dist-url", f"tcp://127.0.0.1:{port}",
            "DATASETS.TRAIN", "('mm_train',)", "DATASETS.TEST", "()", "MODEL.WEIGHTS", "",
            "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "1e-5", "SOLVER.MAX_ITER", "2",
            "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1000",
            "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MIN_SIZE_TEST", "128",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN", "128", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64",
            "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path / f"machine{rank}"),
        ]
        procs.append(subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=900)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"machine {rank} failed:\n{out[-4000:]}"
    # rank 0 writes the final checkpoint; both ran the same 2 iterations
    assert (tmp_path / "machine0" / "model_final.pth").is_file()
    assert "Overall training speed: 0 iterations" not in outs[0]
    weights = torch.load(tmp_path / "machine0" / "model_final.pth", weights_only=False)["model"]
    assert weights["roi_heads.box_predictor.balanced_score.weight"].shape == (C, 1024)
