#!/usr/bin/env python
"""
LDA and the peer methods against the baseline at LVIS v1's shape (1,203 classes, R-50 FPN,
800-px images, 512 ROIs per image), measured side by side in one process, interleaved (each
round runs every method once, in turn), so that the machine's load hits all methods alike.

Two measurements:

* ``predictor``: the box predictor alone, the only part that differs between the methods: forward
  + losses + backward on 512 ROIs x ``--batch`` images of 1024-d box-head features, and the test
  path (forward + per-class scores) on 1,000 proposals per image. The baseline is detectron2's
  ``FastRCNNOutputLayers``.
* ``step``: whole training iterations (data prepared once and shared; SGD step included) and
  inference per test image (300 detections, score threshold 1e-4) of the R-50 12-epoch configs,
  on an LVIS v1-shaped dataset (projects_lda/data/lvis_shaped.py).

The models start from random weights (``MODEL.WEIGHTS ""``) whose frozen BatchNorm statistics are
calibrated on the first batch (:func:`calibrate_frozen_bn`, a stand-in for ImageNet weights) and
train with a tiny learning rate (ResNet-50 with frozen BatchNorm diverges from random init at the
configs' 0.01): their losses mean nothing, only time and memory do. On CUDA (``--device cuda``) it also reports peak GPU memory, and
``--amp`` runs the steps under mixed precision (as ``SOLVER.AMP.ENABLED``).

    python tools/lvis_rehearsal.py predictor --rounds 20
    python tools/lvis_rehearsal.py step --methods baseline lda --rounds 4
    python tools/lvis_rehearsal.py step --device cuda --amp --rounds 20   # on a GPU
    python tools/lvis_rehearsal.py step --rounds 2 --opts MODEL.RPN.POST_NMS_TOPK_TEST 100

Prints median seconds per method and the ratio to the baseline of the same run.
"""
import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

METHODS = {
    "baseline": "mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "lda": "lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "lda_cosine": "lda_cosine_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "seesaw": "seesaw_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "eqlv2": "eqlv2_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "fedloss": "fedloss_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
    "balanced_softmax": "balanced_softmax_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml",
}


@torch.no_grad()
def calibrate_frozen_bn(model, batched_inputs):
    """
    A stand-in for ImageNet weights: sets the statistics of every frozen BatchNorm of the
    backbone to the mean and variance of its input on ``batched_inputs`` (one forward pass, each
    layer calibrated before it runs), so that a randomly initialised ResNet keeps its activations
    at unit scale as a pretrained one does, instead of growing them block after block.
    """
    from detectron2.layers import FrozenBatchNorm2d

    model = getattr(model, "module", model)

    def set_stats(module, inputs):
        x = inputs[0].float()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    handles = [
        m.register_forward_pre_hook(set_stats)
        for m in model.backbone.modules()
        if isinstance(m, FrozenBatchNorm2d)
    ]
    try:
        model.backbone(model.preprocess_image(batched_inputs).tensor)
    finally:
        for h in handles:
            h.remove()
    return len(handles)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_cfg(method, *opts):
    """The project config of ``method``'s R-50 12-epoch LVIS v1 file, with ``opts`` merged."""
    from projects_lda import get_project_cfg

    cfg = get_project_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs/LVISv1", METHODS[method]))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", *[str(o) for o in opts]])
    return cfg


def lvis_like_class_freq(num_classes=1203, seed=0):
    """(C,) instance counts of the full-size LVIS v1-shaped training set's classes."""
    from projects_lda.data.lvis_shaped import lvis_shaped_category_counts

    _, image_count = lvis_shaped_category_counts(seed)
    return torch.as_tensor(image_count[:num_classes], dtype=torch.float32) * 2.5


def synthetic_proposals(num_images, per_image, num_classes, class_freq, device, fg_fraction=0.25,
                        seed=0, with_gt=True):
    """Sampled proposals as the ROI heads give them to the predictor in training."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_images):
        xy = torch.rand(per_image, 2, generator=g) * torch.tensor([900.0, 700.0])
        wh = 16 + torch.rand(per_image, 2, generator=g) * 150
        boxes = torch.cat([xy, xy + wh], dim=1)
        inst = Instances((800, 1067))
        inst.proposal_boxes = Boxes(boxes.to(device))
        if with_gt:
            n_fg = int(per_image * fg_fraction)
            cls = torch.multinomial(class_freq, n_fg, replacement=True, generator=g)
            gt = torch.cat([cls, torch.full((per_image - n_fg,), num_classes)])
            inst.gt_classes = gt.to(device)
            inst.gt_boxes = Boxes((boxes + torch.randn(per_image, 4, generator=g) * 4).to(device))
        out.append(inst)
    return out


def build_predictor(method, device, class_freq):
    """The box predictor of ``method``'s config (1,203 classes), its statistics set."""
    from detectron2.modeling import build_model

    cfg = load_cfg(method, "MODEL.DEVICE", str(device))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        predictor = build_model(cfg).roi_heads.box_predictor
    if hasattr(predictor, "set_class_freq"):
        predictor.set_class_freq(class_freq)
    return predictor.to(device).train()


def predictor_benchmark(methods, rounds, batch, device, warmup=2, amp=False):
    """Median seconds per (training, test) call of each method's predictor."""
    from detectron2.utils.events import EventStorage

    freq = lvis_like_class_freq()
    predictors = {m: build_predictor(m, device, freq) for m in methods}
    C = 1203
    x_train = torch.rand(512 * batch, 1024, device=device)
    props = synthetic_proposals(batch, 512, C, freq, device)
    x_test = torch.rand(1000 * batch, 1024, device=device)
    test_props = synthetic_proposals(batch, 1000, C, freq, device, with_gt=False)
    times = {m: {"train": [], "test": []} for m in methods}
    nonfinite = {m: 0 for m in methods}
    autocast = torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=amp)
    with EventStorage(0):
        for r in range(warmup + rounds):
            for m in methods:
                p = predictors[m]
                p.train()
                _sync(device)
                t0 = time.perf_counter()
                with autocast:
                    losses = p.losses(p(x_train), props)
                total = sum(losses.values())
                total.backward()
                _sync(device)
                t1 = time.perf_counter()
                p.zero_grad(set_to_none=True)
                if not all(torch.isfinite(v) for v in losses.values()):
                    nonfinite[m] += 1
                p.eval()
                with torch.no_grad(), autocast:
                    _sync(device)
                    t2 = time.perf_counter()
                    preds = p(x_test)
                    probs = p.predict_probs(preds, test_props)
                    _sync(device)
                    t3 = time.perf_counter()
                assert probs[0].shape == (1000, C + 1)
                if r >= warmup:
                    times[m]["train"].append(t1 - t0)
                    times[m]["test"].append(t3 - t2)
    return times, nonfinite


def report(title, times, unit="ms", scale=1000.0):
    methods = list(times)
    base = {k: statistics.median(v) for k, v in times["baseline"].items()} if "baseline" in times else None
    keys = list(next(iter(times.values())))
    print(f"\n{title}")
    header = f"{'method':>18} " + " ".join(f"{k + ' ' + unit:>14} {'/ baseline':>10}" for k in keys)
    print(header)
    for m in methods:
        cells = []
        for k in keys:
            med = statistics.median(times[m][k])
            ratio = f"{med / base[k]:10.3f}" if base else f"{'-':>10}"
            cells.append(f"{med * scale:14.2f} {ratio}")
        print(f"{m:>18} " + " ".join(cells))


# ------------------------------------------------------------------------- whole training steps
def step_benchmark(methods, rounds, batch, device, dataset, warmup=1, amp=False, test_images=2,
                   min_size=800, max_size=1333, opts=()):
    """Median seconds per training iteration and per test image of each method's R-50 model."""
    import train_net
    from detectron2.data import build_detection_test_loader
    from detectron2.utils.events import EventStorage
    from projects_lda.data.mapper import SafeDatasetMapper

    train_name, val_name = dataset
    models, optims, nonfinite, cfgs = {}, {}, {}, {}
    for m in methods:
        cfg = load_cfg(
            m, "MODEL.DEVICE", str(device), "DATASETS.TRAIN", f"('{train_name}',)",
            "DATASETS.TEST", f"('{val_name}',)", "SOLVER.IMS_PER_BATCH", batch,
            "SOLVER.BASE_LR", 1e-5, "DATALOADER.NUM_WORKERS", 0,
            "INPUT.MIN_SIZE_TRAIN", f"({min_size},)", "INPUT.MIN_SIZE_TEST", min_size,
            "INPUT.MAX_SIZE_TRAIN", max_size, "INPUT.MAX_SIZE_TEST", max_size,
            "OUTPUT_DIR", tempfile.mkdtemp(prefix="lvis_rehearsal_"), *opts,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            models[m] = train_net.Trainer.build_model(cfg)
        optims[m] = train_net.Trainer.build_optimizer(cfg, models[m])
        nonfinite[m] = 0
        cfgs[m] = cfg
    cfg0 = cfgs[methods[0]]
    loader = iter(train_net.Trainer.build_train_loader(cfg0))
    batches = [next(loader) for _ in range(warmup + rounds)]
    del loader
    for m in methods:
        calibrate_frozen_bn(models[m], batches[0])
    test_loader = build_detection_test_loader(cfg0, val_name, mapper=SafeDatasetMapper(cfg0, False))
    test_inputs = []
    for inputs in test_loader:
        test_inputs.append(inputs)
        if len(test_inputs) == test_images:
            break
    scaler = torch.cuda.amp.GradScaler() if amp and device.type == "cuda" else None
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    times = {m: {"train": [], "test": []} for m in methods}
    dets = {}
    if device.type == "cuda":
        peak = {m: 0 for m in methods}
    with EventStorage(0) as storage:
        for r, data in enumerate(batches):
            for m in methods:
                model, opt = models[m], optims[m]
                model.train()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                _sync(device)
                t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=dtype, enabled=amp):
                    losses = model(data)
                total = sum(losses.values())
                opt.zero_grad()
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    total.backward()
                    opt.step()
                _sync(device)
                t1 = time.perf_counter()
                if device.type == "cuda":
                    peak[m] = max(peak[m], torch.cuda.max_memory_allocated(device))
                if not all(math.isfinite(v.item()) for v in losses.values()):
                    nonfinite[m] += 1
                if r >= warmup:
                    times[m]["train"].append(t1 - t0)
                storage.step()
            if r < warmup:
                continue
            for m in methods:  # inference, interleaved too
                model = models[m]
                model.eval()
                inputs = test_inputs[r % len(test_inputs)]
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=amp):
                    _sync(device)
                    t0 = time.perf_counter()
                    out = model(inputs)
                    _sync(device)
                    t1 = time.perf_counter()
                times[m]["test"].append((t1 - t0) / len(inputs))
                dets[m] = len(out[0]["instances"])
    extra = {"nonfinite": nonfinite, "detections": dets}
    if device.type == "cuda":
        extra["peak_gib"] = {m: v / 2**30 for m, v in peak.items()}
    return times, extra


def register_shaped(size, cache):
    """Registers the LVIS v1-shaped dataset of ``size`` as ``lvis_shaped_<size>_{train,val}``."""
    from detectron2.data import DatasetCatalog
    from projects_lda.data import register_lvis_format
    from projects_lda.data.lvis_shaped import generate_lvis_shaped

    paths = generate_lvis_shaped(os.path.join(cache, str(size)), size)
    names = []
    for split in ("train", "val"):
        name = f"lvis_shaped_{size}_{split}"
        if name not in DatasetCatalog.list():
            register_lvis_format(name, paths[f"{split}_json"], paths["image_root"])
        names.append(name)
    return tuple(names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["predictor", "step"])
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="default: all for 'predictor', baseline and lda for 'step'")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--batch", type=int, default=2, help="images per process (the LVIS configs: 8 images over 4 GPUs; detectron2's LVIS recipe: 2 per GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on the CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--size", default="1k", help="LVIS v1-shaped dataset size for 'step'")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lvis_shaped"))
    parser.add_argument("--min-size", type=int, default=800, help="image short side for 'step'")
    parser.add_argument("--max-size", type=int, default=1333)
    parser.add_argument("--test-images", type=int, default=2)
    parser.add_argument("--opts", nargs="+", default=[], help="config options for 'step': KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    methods = args.methods or (list(METHODS) if args.what == "predictor" else ["baseline", "lda"])
    if "baseline" in methods:
        methods = ["baseline"] + [m for m in methods if m != "baseline"]
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
    if args.what == "predictor":
        times, nonfinite = predictor_benchmark(
            methods, args.rounds, args.batch, device, warmup=2 if args.warmup is None else args.warmup, amp=args.amp
        )
        report(
            f"Box predictor alone, 1,203 classes, 1024-d features, {args.rounds} interleaved rounds on "
            f"{where}{', AMP' if args.amp else ''}: train = forward + losses + backward on 512 x "
            f"{args.batch} ROIs; test = forward + scores on 1000 x {args.batch} proposals (medians)",
            times,
        )
        print("non-finite losses (rounds):", nonfinite)
        return times
    dataset = register_shaped(int(args.size) if args.size.isdigit() else args.size, args.cache)
    times, extra = step_benchmark(
        methods, args.rounds, args.batch, device, dataset, warmup=1 if args.warmup is None else args.warmup,
        amp=args.amp, test_images=args.test_images, min_size=args.min_size, max_size=args.max_size,
        opts=args.opts,
    )
    report(
        f"R-50 FPN, 1,203 classes, {args.min_size}-px images, batch {args.batch}, {args.rounds} "
        f"interleaved rounds on {where}{', AMP' if args.amp else ''}: seconds per training iteration "
        "and per test image (300 detections, score > 1e-4) (medians; random weights, LR 1e-5: "
        "losses mean nothing)",
        times, unit="s", scale=1.0,
    )
    for m in methods:
        it_s = 1.0 / statistics.median(times[m]["train"])
        line = f"{m:>18}: {it_s:.3f} iterations/s, {extra['detections'].get(m)} detections on the last test image, non-finite loss in {extra['nonfinite'][m]} iteration(s)"
        if "peak_gib" in extra:
            line += f", peak GPU memory {extra['peak_gib'][m]:.2f} GiB"
        print(line)
    return times, extra


if __name__ == "__main__":
    main()
