"""
LDA and the peer methods against the baseline at LVIS v1's shape (1,203 classes, R-50 FPN,
800-px images, 512 ROIs per image), without LVIS's data or ImageNet weights
(``tools/measure.py predictor``, ``step`` and ``configs``; docs/scale.md).

* :func:`predictor_benchmark`: the box predictor alone, the only part that differs between the
  methods: forward + losses + backward on 512 ROIs x ``batch`` images of 1024-d box-head
  features, and the test path (forward + per-class scores) on 1,000 proposals per image. The
  baseline is detectron2's ``FastRCNNOutputLayers``.
* :func:`step_benchmark`: whole training iterations (data prepared once and shared; SGD step
  included) and inference per test image (300 detections, score threshold 1e-4) of the R-50
  12-epoch configs, on an LVIS v1-shaped dataset (projects_lda/worlds/lvis_shaped.py).
* :func:`run_config`: a config of configs/LVISv1/ trained a few iterations with train_net.py's
  Trainer (its hooks, checkpointer and evaluator), then evaluated.

Methods are measured side by side in one process, interleaved (each round runs every method once,
in turn), so that the machine's load hits all methods alike. The models start from random
weights (``MODEL.WEIGHTS ""``) whose frozen BatchNorm statistics are calibrated on the first
batch (:func:`calibrate_frozen_bn`, a stand-in for ImageNet weights) and train with a tiny
learning rate (ResNet-50 with frozen BatchNorm diverges from random init at the configs' 0.01):
their losses and APs mean nothing, only time, memory and well-formed outputs do.
"""
import argparse
import collections
import json
import math
import os
import tempfile
import time

import torch

from detectron2.data import DatasetCatalog, build_detection_test_loader
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from ..config import get_project_cfg
from ..worlds.lvis_shaped import lvis_shaped_category_counts
from ..data.mapper import SafeDatasetMapper
from ..engine.defaults import Trainer, setup
from .host_syncs import predictor_step, profile_step
from ..evaluation.lvis_evaluation import RESULTS_JSON

NUM_CLASSES, MAX_DETECTIONS, SCORE_THRESH = 1203, 300, 1e-4  # LVIS v1 and its evaluation
# the LVIS v1 configs of a checkout (relative: the working directory's); the tools pass theirs
CONFIG_DIR = os.path.join("configs", "LVISv1")

# method -> its R-50 12-epoch config in configs/LVISv1/
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


def _half(device):
    """The half-precision type of mixed precision on ``device`` (as SOLVER.AMP.ENABLED)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def load_cfg(method, *opts, config_dir=CONFIG_DIR):
    """The project config of ``method``'s R-50 12-epoch LVIS v1 file in ``config_dir``, with
    ``opts`` merged."""
    cfg = get_project_cfg()
    cfg.merge_from_file(os.path.join(config_dir, METHODS[method]))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", *[str(o) for o in opts]])
    return cfg


def lvis_like_class_freq(num_classes=NUM_CLASSES, seed=0):
    """(C,) instance counts of the full-size LVIS v1-shaped training set's classes."""
    _, image_count = lvis_shaped_category_counts(seed)
    return torch.as_tensor(image_count[:num_classes], dtype=torch.float32) * 2.5


def synthetic_proposals(num_images, per_image, num_classes, class_freq, device, fg_fraction=0.25,
                        seed=0, with_gt=True):
    """Sampled proposals as the ROI heads give them to the predictor in training."""
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


def build_predictor(method, device, class_freq, config_dir=CONFIG_DIR):
    """The box predictor of ``method``'s config (1,203 classes), its statistics set."""
    cfg = load_cfg(method, "MODEL.DEVICE", str(device), config_dir=config_dir)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        predictor = build_model(cfg).roi_heads.box_predictor
    if hasattr(predictor, "set_class_freq"):
        predictor.set_class_freq(class_freq)
    return predictor.to(device).train()


def predictor_benchmark(methods, rounds, batch, device, warmup=2, amp=False,
                        config_dir=CONFIG_DIR):
    """(times {method: {"train": [s], "test": [s]}} of each round after ``warmup``, rounds with
    a non-finite loss {method: count}) of each method's predictor."""
    freq = lvis_like_class_freq()
    predictors = {m: build_predictor(m, device, freq, config_dir) for m in methods}
    C = NUM_CLASSES
    x_train = torch.rand(512 * batch, 1024, device=device)
    props = synthetic_proposals(batch, 512, C, freq, device)
    x_test = torch.rand(1000 * batch, 1024, device=device)
    test_props = synthetic_proposals(batch, 1000, C, freq, device, with_gt=False)
    times = {m: {"train": [], "test": []} for m in methods}
    nonfinite = {m: 0 for m in methods}
    autocast = torch.autocast(device.type, dtype=_half(device), enabled=amp)
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


def predictor_profiles(methods, batch, device, top=0, config_dir=CONFIG_DIR):
    """{method: host_syncs.profile_step's dict} of one training step (forward + losses +
    backward) of each method's predictor, after a first step that computes its statistics."""
    freq = lvis_like_class_freq()
    x = torch.rand(512 * batch, 1024, device=device)
    props = synthetic_proposals(batch, 512, NUM_CLASSES, freq, device)
    profiles = {}
    with EventStorage(0):
        for m in methods:
            p = build_predictor(m, device, freq, config_dir)
            predictor_step(p, x, props)
            profiles[m] = profile_step(predictor_step, p, x, props, top=top)
    return profiles


# ------------------------------------------------------------------------- whole training steps
def step_benchmark(methods, rounds, batch, device, dataset, warmup=1, amp=False, test_images=2,
                   min_size=800, max_size=1333, opts=(), config_dir=CONFIG_DIR):
    """
    (times {method: {"train": [s per iteration], "test": [s per image]}} of each round after
    ``warmup``, extra figures: rounds with a non-finite loss, detections on the last test image,
    the model measured ("model", from the config) and, on CUDA, peak memory in GiB) of each
    method's LVIS v1 config (R-50 unless ``opts`` say otherwise) on ``dataset`` (train, val).
    """
    train_name, val_name = dataset
    models, optims, nonfinite, cfgs = {}, {}, {}, {}
    for m in methods:
        cfg = load_cfg(
            m, "MODEL.DEVICE", str(device), "DATASETS.TRAIN", f"('{train_name}',)",
            "DATASETS.TEST", f"('{val_name}',)", "SOLVER.IMS_PER_BATCH", batch,
            "SOLVER.BASE_LR", 1e-5, "DATALOADER.NUM_WORKERS", 0,
            "INPUT.MIN_SIZE_TRAIN", f"({min_size},)", "INPUT.MIN_SIZE_TEST", min_size,
            "INPUT.MAX_SIZE_TRAIN", max_size, "INPUT.MAX_SIZE_TEST", max_size,
            "OUTPUT_DIR", tempfile.mkdtemp(prefix="lvis_rehearsal_"), *opts, config_dir=config_dir,
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            models[m] = Trainer.build_model(cfg)
        optims[m] = Trainer.build_optimizer(cfg, models[m])
        nonfinite[m] = 0
        cfgs[m] = cfg
    cfg0 = cfgs[methods[0]]
    loader = iter(Trainer.build_train_loader(cfg0))
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
    dtype = _half(device)
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
    # what was measured, read from the config (opts can change depth, classes, detections)
    model_name = (f"R-{cfg0.MODEL.RESNETS.DEPTH} FPN, "
                  f"{cfg0.MODEL.ROI_HEADS.NUM_CLASSES:,} classes, "
                  f"{cfg0.TEST.DETECTIONS_PER_IMAGE} detections per test image")
    extra = {"nonfinite": nonfinite, "detections": dets, "model": model_name}
    if device.type == "cuda":
        extra["peak_gib"] = {m: v / 2**30 for m, v in peak.items()}
    return times, extra


# ------------------------------------------------------------------------- the LVIS configs, run
def run_config(config_file, train_name, val_name, out_dir, *, iters=1, batch=1, min_size=800,
               root="."):
    """
    Trains the config ``iters`` iterations on ``train_name`` into ``out_dir`` and evaluates it on
    ``val_name``; returns what happened: the predictor's class, the last losses, seconds taken,
    detections per image, the lowest score kept and the evaluation results (its ``config``
    named relative to the checkout ``root``).
    """
    opts = [
        "MODEL.WEIGHTS", "", "DATASETS.TRAIN", f"('{train_name}',)", "DATASETS.TEST",
        f"('{val_name}',)", "SOLVER.IMS_PER_BATCH", str(batch), "SOLVER.BASE_LR", "1e-5",
        "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.CHECKPOINT_PERIOD", str(10 ** 9), "TEST.EVAL_PERIOD", "0",
        "INPUT.MIN_SIZE_TRAIN", f"({min_size},)", "INPUT.MIN_SIZE_TEST", str(min_size),
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", out_dir,
        "TEST.LVIS_EVAL.WRITE_RESULTS_JSON", "True",  # the detections, counted below
    ]
    args = argparse.Namespace(config_file=config_file, opts=opts, eval_only=False, resume=False)
    cfg = setup(args)
    shape = (cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.TEST.DETECTIONS_PER_IMAGE,
             cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST)
    if shape != (NUM_CLASSES, MAX_DETECTIONS, SCORE_THRESH):
        raise ValueError(f"{config_file}: (classes, detections per image, score threshold) are "
                         f"{shape}, not LVIS v1's {(NUM_CLASSES, MAX_DETECTIONS, SCORE_THRESH)}")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    calibrate_frozen_bn(trainer.model, next(iter(Trainer.build_train_loader(cfg))))
    t0 = time.perf_counter()
    trainer.train()  # ends with the evaluation (DefaultTrainer's EvalHook)
    total = time.perf_counter() - t0
    latest = trainer.storage.latest()
    losses = {k: float(v[0]) for k, v in latest.items() if k.startswith("loss_")}
    with open(os.path.join(out_dir, "inference", val_name, RESULTS_JSON)) as f:
        detections = json.load(f)
    per_image_count = collections.Counter(d["image_id"] for d in detections)
    per_image = [per_image_count[r["image_id"]] for r in DatasetCatalog.get(val_name)]
    scores = [d["score"] for d in detections]
    results = getattr(trainer, "_last_eval_results", None) or {}
    return {
        "config": os.path.relpath(config_file, root),
        "head": type(trainer.model.roi_heads.box_predictor).__name__,
        "losses": losses,
        "total_s": total,
        "detections_per_image": per_image,
        "min_score": min(scores) if scores else None,
        "results": results,
    }
