"""
CUDA versions of the predictor checks, at LVIS shape (1,203 classes): buffers on the model's
device, float64 counts reduced over NCCL, fused scores equal to the CPU ones, LDA losses under
float16 autocast, host synchronisations of a training step (torch.cuda.set_sync_debug_mode).
Skipped without CUDA (run by tools/gpu_check.sh on a GPU machine).
"""
import socket

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.utils.events import EventStorage

from projects_lda import LDAFastRCNNOutputLayers, get_project_cfg
from projects_lda.benchmark import lvis_rehearsal

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (run tools/gpu_check.sh on a GPU machine)"
)
C = 1203


def _lda(device, freq):
    cfg = get_project_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = C
    # the LVIS configs' test settings: at 1,203 classes an untrained model's scores (p_fg x
    # p_balanced, about 1/1,203) all fall under detectron2's default threshold of 0.05
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 1e-4
    cfg.TEST.DETECTIONS_PER_IMAGE = 300
    torch.manual_seed(0)
    p = LDAFastRCNNOutputLayers(cfg, ShapeSpec(channels=1024))
    p.set_class_freq(freq)
    return p.to(device).train()


def _inputs(device, freq, n=512):
    props = lvis_rehearsal.synthetic_proposals(2, n, C, freq, torch.device(device))
    x = torch.rand(2 * n, 1024, generator=torch.Generator().manual_seed(1)).to(device)
    return x, props


def test_buffers_follow_the_model_to_cuda():
    freq = lvis_rehearsal.lvis_like_class_freq()
    p = _lda("cuda", freq)
    for name, buf in p.named_buffers():
        assert buf.device.type == "cuda", name
    assert p.accuracy_window.counts.dtype == torch.float64
    x, props = _inputs("cuda", freq)
    with EventStorage(0):
        losses = p.losses(p(x), props)
    for k, v in losses.items():
        assert v.device.type == "cuda" and torch.isfinite(v), k
    sum(losses.values()).backward()
    assert p.accuracy_window.counts[0, 2].item() == int(
        (torch.cat([q.gt_classes for q in props]) < C).sum())


def test_losses_and_scores_equal_on_cpu_and_cuda():
    freq = lvis_rehearsal.lvis_like_class_freq()
    cpu, gpu = _lda("cpu", freq), _lda("cuda", freq)
    x, props = _inputs("cpu", freq)
    xg, props_g = _inputs("cuda", freq)
    with EventStorage(0):
        lc = cpu.losses(cpu(x), props)
        lg = gpu.losses(gpu(xg), props_g)
    for k in lc:
        assert lg[k].item() == pytest.approx(lc[k].item(), rel=1e-4, abs=1e-5), k
    cpu.eval(), gpu.eval()
    with torch.no_grad():
        pc = cpu.predict_probs(cpu(x), props)
        pg = gpu.predict_probs(gpu(xg), props_g)
        for a, b in zip(pc, pg):
            assert torch.allclose(a, b.cpu(), rtol=1e-4, atol=1e-7)
        (inst, _) = gpu.inference(gpu(xg), props_g)
    assert all(0 < len(i) <= 300 for i in inst)  # TEST.DETECTIONS_PER_IMAGE
    assert all(bool((i.scores >= 1e-4).all()) for i in inst)  # SCORE_THRESH_TEST


def test_lda_losses_under_float16_autocast():
    freq = lvis_rehearsal.lvis_like_class_freq()
    p = _lda("cuda", freq)
    x, props = _inputs("cuda", freq)
    with EventStorage(0):
        ref = p.losses(p(x * 50), props)
        p = _lda("cuda", freq)
        with torch.autocast("cuda", dtype=torch.float16):
            out = p.losses(p(x * 50), props)
    for k in ref:
        assert torch.isfinite(out[k]), k
        assert out[k].float().item() == pytest.approx(ref[k].item(), rel=0.02, abs=0.02), k


def _sync_warnings(predictor, x, props):
    """Host synchronisations of one training step, as torch.cuda.set_sync_debug_mode sees them."""
    import warnings

    from projects_lda.benchmark.host_syncs import predictor_step

    with EventStorage(0):
        predictor_step(predictor, x, props)  # the first step computes the class statistics
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                predictor_step(predictor, x, props)
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message)]


def test_lda_step_synchronises_at_most_twice_more_than_the_baseline_on_cuda():
    from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

    freq = lvis_rehearsal.lvis_like_class_freq()
    cfg = get_project_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = C
    baseline = FastRCNNOutputLayers(cfg, ShapeSpec(channels=1024)).cuda().train()
    x, props = _inputs("cuda", freq)
    base = _sync_warnings(baseline, x, props)
    lda = _sync_warnings(_lda("cuda", freq), x, props)
    print(f"host synchronisations per training step: baseline {len(base)}, LDA {len(lda)}")
    assert len(lda) <= len(base) + 2, lda


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nccl_worker(rank, world, port, queue):
    import torch.distributed as dist

    from projects_lda.modeling.balance import AccuracyWindow

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        window = AccuracyWindow(4, 1.5).cuda()
        window.update(torch.tensor(rank + 1), torch.tensor(rank), 10 * (rank + 1))
        queue.put((rank, window.counts[0].cpu().tolist(), float(window.alpha())))
    finally:
        dist.destroy_process_group()


def test_float64_window_counts_reduce_over_nccl():
    """Every rank holds the sum of the ranks' counts (one rank per GPU; 1 GPU: a 1-rank group)."""
    import torch.multiprocessing as mp

    world = min(2, torch.cuda.device_count())
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_nccl_worker, args=(r, world, port, queue)) for r in range(world)]
    for proc in procs:
        proc.start()
    results = dict((r, (c, a)) for r, c, a in (queue.get(timeout=300) for _ in procs))
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    expected = [float(sum(r + 1 for r in range(world))), float(sum(range(world))),
                float(sum(10 * (r + 1) for r in range(world)))]
    assert all(c == expected for c, _ in results.values())
    assert len({a for _, a in results.values()}) == 1  # the same alpha on every rank
