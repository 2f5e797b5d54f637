"""
Distributed training and evaluation on the CPU: two processes joined by a gloo process group
(the tests' pool of gloo workers, conftest.py; ``train_net.py --num-gpus 2`` starts its own).

* DDP training through ``train_net.Trainer`` (detectron2's ``create_ddp_model``, no
  ``find_unused_parameters``) where worker 1's images have no annotation, so its batches hold
  no foreground: both workers end with identical weights and an identical LDA alpha window.
* Evaluation split over the two processes (the evaluator merges their match results) gives the
  same predictions and the same LVIS AP as one process.
* ``train_net.py --num-gpus 2`` works on a machine without CUDA, and so does ``train_net.py`` as two
  machines on one host (``--num-machines 2 --machine-rank 0|1``).
"""
import functools
import json
import os
import socket
import subprocess
import sys

import torch

from detectron2.utils import comm

from projects_lda.data import register_from_env
from projects_lda.data.loader import build_reproducible_train_loader
from projects_lda.data.mapper import SafeDatasetMapper

from conftest import LDA_CONFIG, ROOT, TINY_CLASSES, run_gloo_workers, tiny_opts

import train_net  # noqa: E402


class _DropAnnotations(SafeDatasetMapper):
    """Maps every image as if it had no annotation: all its proposals are background."""

    def __call__(self, dataset_dict):
        return super().__call__(dict(dataset_dict, annotations=[]))


class _NoForegroundOnWorker1(train_net.Trainer):
    @classmethod
    def build_train_loader(cls, cfg):
        mapper_cls = _DropAnnotations if comm.get_rank() == 1 else SafeDatasetMapper
        return build_reproducible_train_loader(cfg, mapper=mapper_cls(cfg, is_train=True))


def _ddp_worker(args, result_dir, env, rank):
    """Runs in each gloo process: trains, evaluates, and saves what the test compares."""
    os.environ["LDA_EXTRA_DATASETS"] = env["LDA_EXTRA_DATASETS"]
    register_from_env()  # the tiny datasets, registered in the parent only
    cfg = train_net.setup(args)
    trainer = _NoForegroundOnWorker1(cfg)
    ddp = trainer.model
    assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
    assert not ddp.find_unused_parameters
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = ddp.module
    window = model.roi_heads.box_predictor.accuracy_window
    torch.save(
        {
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "window_counts": window.counts.clone(),
            "window_position": int(window.position),
            "fg_samples": trainer.storage.history("roi_head/num_fg_samples").values(),
            "eval": getattr(trainer, "_last_eval_results", None),
            "world_size": comm.get_world_size(),
        },
        f"{result_dir}/rank{comm.get_rank()}.pt",
    )


def _predictions(out_dir):
    path = out_dir / "inference" / "tiny_embedded_val" / "lvis_instances_results.json"
    with open(path) as f:
        preds = json.load(f)
    return sorted(preds, key=lambda p: (p["image_id"], p["category_id"], -p["score"], p["bbox"]))


def test_ddp_without_foreground_on_one_worker_and_distributed_eval(
    tiny_dataset, train_args, tmp_path
):
    out = tmp_path / "ddp"
    json_on = ("TEST.LVIS_EVAL.WRITE_RESULTS_JSON", "True")  # the predictions compared below
    args = train_args(out, "SOLVER.MAX_ITER", "3", "MODEL.LDA.WINDOW", "4", *json_on)
    run_gloo_workers(functools.partial(_ddp_worker, args, str(tmp_path), tiny_dataset["env"]))

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["world_size"] == r1["world_size"] == 2
    # worker 1 never had a foreground proposal, worker 0 had some
    assert [v for v, _ in r1["fg_samples"]] == [0.0, 0.0, 0.0]
    assert sum(v for v, _ in r0["fg_samples"]) > 0
    # identical weights and buffers (class frequencies, alpha window) on both workers
    assert r0["state"].keys() == r1["state"].keys()
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    assert torch.equal(r0["window_counts"], r1["window_counts"])
    assert r0["window_position"] == r1["window_position"] == 3
    assert r0["window_counts"][:, 2].sum() > 0  # worker 0's foreground counts, summed
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    last = [r for r in rows if "total_loss" in r][-1]
    assert last["data/images_without_instances"] >= 3  # worker 1's images, 1 per iteration

    # the same checkpoint evaluated by one process: same predictions, same AP
    single = tmp_path / "single"
    res = train_net.main(
        train_args(single, "MODEL.WEIGHTS", str(out / "model_final.pth"), *json_on,
                   eval_only=True)
    )
    dist_res = r0["eval"]
    assert dist_res and set(dist_res) == set(res) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert dist_res[task] == res[task], task
    preds_dist, preds_single = _predictions(out), _predictions(single)
    assert len(preds_dist) == len(preds_single) > 0
    assert {p["image_id"] for p in preds_dist} == {p["image_id"] for p in preds_single}
    assert len({p["image_id"] for p in preds_dist}) == 6  # every validation image, from both
    assert preds_dist == preds_single


def test_train_net_num_gpus_2_without_cuda(tiny_dataset, tmp_path):
    out = tmp_path / "cli"
    cmd = [
        sys.executable, str(ROOT / "train_net.py"), "--num-gpus", "2", "--dist-url", "auto",
        "--config-file", str(LDA_CONFIG),
        *tiny_opts(out, "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()"),
    ]
    proc = subprocess.run(
        cmd, env=tiny_dataset["env"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "World size: 2" in log
    assert (out / "model_final.pth").is_file()
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert state["model"]["roi_heads.box_predictor.class_freq"].shape == (TINY_CLASSES,)
    assert int(state["model"]["roi_heads.box_predictor.accuracy_window.position"]) == 2


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_train_net_as_two_machines_on_one_host(tiny_dataset, tmp_path):
    """``--num-machines 2 --machine-rank 0|1 --dist-url tcp://...``, one process each: the way
    users go past one machine (the LVIS configs' 1,203-class predictor over DDP is
    tests/test_lvis_distributed.py's)."""
    port = _free_port()
    procs = []
    for rank in (0, 1):
        cmd = [
            sys.executable, str(ROOT / "train_net.py"), "--config-file", str(LDA_CONFIG),
            "--num-gpus", "1", "--num-machines", "2", "--machine-rank", str(rank),
            "--dist-url", f"tcp://127.0.0.1:{port}",
            *tiny_opts(tmp_path / f"machine{rank}", "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()"),
        ]
        procs.append(subprocess.Popen(cmd, env=tiny_dataset["env"], cwd=str(ROOT),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=300)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"machine {rank} failed:\n{out[-4000:]}"
    assert "World size: 2" in outs[0]
    # rank 0 writes the final checkpoint; both ran the same 2 iterations
    assert not (tmp_path / "machine1" / "model_final.pth").exists()
    state = torch.load(tmp_path / "machine0" / "model_final.pth", map_location="cpu",
                       weights_only=True)["model"]
    assert int(state["roi_heads.box_predictor.accuracy_window.position"]) == 2

