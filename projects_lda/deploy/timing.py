"""
CPU time per image of a model run eagerly, as TorchScript and under ONNX Runtime
(``tools/time_inference.py``; the figures are in docs/deployment.md).

Every runner takes the same resized inputs and returns detectron2's outputs (boxes, scores,
classes and masks pasted into the original image), so the times compare the same work. The
runners are interleaved image by image (machine load hits them alike); an image's time is the
smallest of its repeats, and a runner's figure is the mean over the images.
"""
import os
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from ..data.class_names import ClassNames, class_names_from_metadata
from .export import ExportedModel, export_model, read_model_input
from .predictor import load_inference_weights

__all__ = ["model_runners", "ratios", "time_runners"]


def time_runners(
    runners: Dict[str, Callable], inputs: Sequence[Dict], *, repeats: int = 3, warmup: int = 1
) -> Dict[str, float]:
    """Seconds per image of each runner (``runner([input])``) over ``inputs`` (see the module
    docstring); ``warmup`` passes over the first image are not timed."""
    for run in runners.values():
        for _ in range(warmup):
            run([inputs[0]])
    best = {name: [float("inf")] * len(inputs) for name in runners}
    with torch.no_grad():
        for _ in range(repeats):
            for i, x in enumerate(inputs):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run([x])
                    best[name][i] = min(best[name][i], time.perf_counter() - start)
    return {name: sum(times) / len(times) for name, times in best.items()}


def _names(cfg) -> ClassNames:
    """Class names for an exported model without trained weights: the config's datasets', else
    numbered ones."""
    for dataset in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN):
        names = class_names_from_metadata(MetadataCatalog.get(dataset))
        if names is not None and len(names) == cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            return names
    return ClassNames([f"class_{i}" for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)])


def model_runners(
    cfg,
    *,
    formats: Sequence[str] = ("eager", "torchscript", "onnx"),
    num_images: int = 20,
    folder: Optional[str] = None,
    seed: int = 0,
    threads: int = 1,
):
    """
    ``(runners, inputs)`` of the model of ``cfg``: its ``MODEL.WEIGHTS`` when set, else its
    initial weights (seeded by ``seed``), run eagerly and exported (by tracing, into ``folder``
    or a temporary one) to each of ``formats``; the inputs are the first ``num_images`` images
    of ``DATASETS.TEST[0]``.
    """
    torch.manual_seed(seed)
    model = build_model(cfg)
    model.eval()
    names = load_inference_weights(model, cfg) if cfg.MODEL.WEIGHTS else _names(cfg)
    records = DatasetCatalog.get(cfg.DATASETS.TEST[0])[:num_images]
    inputs = [read_model_input(r["file_name"], cfg) for r in records]
    folder = folder or tempfile.mkdtemp(prefix="lda_export_")
    runners: Dict[str, Callable] = {}
    for fmt in formats:
        if fmt == "eager":
            runners[fmt] = model
            continue
        out = os.path.join(folder, fmt)
        export_model(model, inputs[0]["image"], out, cfg=cfg, class_names=names, fmt=fmt)
        runners[fmt] = ExportedModel(out, num_threads=threads)
    return runners, inputs


def ratios(times: Dict[str, Dict[str, float]], baseline: str) -> List[str]:
    """Lines of a table: each model's time per image per runner, against the eager run of the
    same model and against the same runner of ``baseline``."""
    lines = []
    for model, per_runner in times.items():
        eager = per_runner.get("eager")
        for runner, seconds in per_runner.items():
            vs_eager = f"{seconds / eager:.3f}x" if eager else "-"
            ref = times.get(baseline, {}).get(runner)
            vs_base = f"{seconds / ref:.3f}x" if ref and model != baseline else "-"
            lines.append(f"| {model} | {runner} | {seconds * 1000:.1f} | {vs_eager} | {vs_base} |")
    return lines
