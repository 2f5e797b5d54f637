"""
LDA with 1,203 classes over two gloo processes: the LDA predictor wrapped in DDP where worker 0's
batches hold only frequent classes and worker 1's only rare ones (and, in one step, no
foreground at all): both end with the same weights and the same alpha window, every parameter
gets a gradient on every worker. (``train_net.py`` as two machines: tests/test_distributed.py.)
"""
import torch

from conftest import run_gloo_workers

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
            props = lvis_rehearsal.synthetic_proposals(1, 256, C, freq, torch.device("cpu"),
                                                       seed=step)
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
