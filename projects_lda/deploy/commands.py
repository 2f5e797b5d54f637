"""
What ``tools/demo.py`` and ``tools/export_model.py`` run, as functions of their options.
"""
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch

from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.modeling import build_model

from ..engine.defaults import load_config
from .demo import (
    DemoSummary,
    expand_inputs,
    open_video,
    run_on_images,
    run_on_video,
)
from .export import (
    ExportedModel,
    Parity,
    check_export_options,
    compare_predictions,
    export_model,
    parity_problems,
    read_model_input,
)
from .predictor import Predictor, load_inference_weights

__all__ = ["dataset_files", "demo", "export", "inference_config"]

logger = logging.getLogger(__name__)


def inference_config(config_file: str, opts: Sequence[str], confidence_threshold=None):
    """
    The frozen config of a trained model (``MODEL.WEIGHTS`` among ``opts``) for inference;
    ``confidence_threshold`` sets ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` as detectron2's demo
    does (the drawings and the results file keep the detections above it).
    """
    cfg = load_config(config_file, opts)
    if confidence_threshold is not None:
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = confidence_threshold
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    return cfg


def dataset_files(dataset: str, num_images: int) -> List[str]:
    """The image files of the first ``num_images`` records of the registered ``dataset``;
    ``ValueError`` names a dataset that is not registered."""
    if dataset not in DatasetCatalog.list():
        raise ValueError(f"--dataset {dataset}: no such registered dataset (LDA_EXTRA_DATASETS "
                         "registers one)")
    return [d["file_name"] for d in DatasetCatalog.get(dataset)[:num_images]]


def demo(
    cfg,
    *,
    inputs: Optional[Sequence[str]] = None,
    dataset: Optional[str] = None,
    num_images: int = 8,
    video: Optional[str] = None,
    webcam: bool = False,
    output: Optional[str] = None,
    json_file: Optional[str] = None,
    progress: bool = True,
    annotations: Optional[str] = None,
) -> DemoSummary:
    """Runs the model of ``cfg`` on image files / folders / globs, the first ``num_images``
    images of a registered ``dataset`` (drawn with its class names; with ``json_file``, the
    image ids are those of its annotation file unless ``annotations`` names another), a video
    file or the webcam (exactly one), as ``tools/demo.py`` describes."""
    if sum([bool(inputs), bool(dataset), bool(video), bool(webcam)]) != 1:
        raise ValueError("give exactly one of --input, --dataset, --video-input, --webcam")
    # errors before the model loads
    files = expand_inputs(inputs) if inputs else None
    if dataset:
        files = dataset_files(dataset, num_images)
        if json_file and annotations is None:
            annotations = MetadataCatalog.get(dataset).get("json_file", None)
    predictor = Predictor(cfg)
    metadata = MetadataCatalog.get(dataset) if dataset else predictor.metadata
    common = dict(class_names=predictor.class_names, metadata=metadata,
                  json_file=json_file, progress=progress)
    if files is not None:
        return run_on_images(predictor, files, output=output, annotations=annotations, **common)
    if video:
        if output and os.path.isdir(output):
            output = os.path.join(output, os.path.splitext(os.path.basename(video))[0] + ".mp4")
        capture = open_video(video)
        try:
            return run_on_video(predictor, capture, output=output, **common)
        finally:
            capture.release()
    import cv2

    capture = cv2.VideoCapture(0)
    if not capture.isOpened():
        raise ValueError("--webcam: OpenCV cannot open camera 0")
    window = "LDA demo (Esc quits)"

    def show(frame):
        cv2.imshow(window, frame)
        return cv2.waitKey(1) != 27

    try:
        return run_on_video(predictor, capture, output=output, show=show, **common)
    finally:
        capture.release()
        cv2.destroyAllWindows()


def _sample_files(cfg, sample_image: Optional[str], num_check: int) -> List[str]:
    """The sample image (given, else the first of ``DATASETS.TEST[0]``) and the images the
    parity is checked on (the sample, then the next test images, ``num_check`` in all)."""
    files = [sample_image] if sample_image else []
    if len(files) < max(num_check, 1):
        if not cfg.DATASETS.TEST or cfg.DATASETS.TEST[0] not in DatasetCatalog.list():
            raise ValueError(
                f"--sample-image: give one, or register DATASETS.TEST {list(cfg.DATASETS.TEST)} "
                f"(LDA_EXTRA_DATASETS): the sample and the parity check take its images"
            )
        records = DatasetCatalog.get(cfg.DATASETS.TEST[0])
        files += [r["file_name"] for r in records[: max(num_check, 1) - len(files)]]
    for f in files:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"--sample-image: no such file: {f}")
    return files


def export(
    cfg,
    *,
    output: str,
    fmt: str = "torchscript",
    method: str = "tracing",
    sample_image: Optional[str] = None,
    num_check: int = 3,
    run_eval: bool = False,
) -> Dict:
    """
    Exports the model of ``cfg`` into ``output`` (:func:`~projects_lda.deploy.export.export_model`),
    then runs the exported file on the sample image and the first test images (``num_check`` in
    all) beside the eager model and returns ``{"path", "parity": [Parity per image],
    "problems": [...], "metrics"}``; ``metrics`` (with ``run_eval``) is the exported model's
    evaluation on ``DATASETS.TEST[0]``.
    """
    check_export_options(fmt, method)
    model = build_model(cfg)
    model.eval()
    class_names = load_inference_weights(model, cfg)
    files = _sample_files(cfg, sample_image, num_check)
    inputs = [read_model_input(f, cfg) for f in files]
    path = export_model(model, inputs[0]["image"], output, cfg=cfg, class_names=class_names,
                        fmt=fmt, method=method)
    exported = ExportedModel(output)
    parity: List[Parity] = []
    problems = []
    for f, x in zip(files, inputs[: max(num_check, 1)]):
        with torch.no_grad():
            ref = model([x])[0]["instances"].to("cpu")
        p = compare_predictions(ref, exported([x])[0]["instances"])
        parity.append(p)
        problems += [f"{f}: {problem}" for problem in parity_problems(p)]
    metrics = None
    if run_eval:
        from ..evaluation import build_evaluator

        dataset = cfg.DATASETS.TEST[0]
        loader = build_detection_test_loader(cfg, dataset)
        evaluator = build_evaluator(cfg, dataset, os.path.join(output, "inference"))
        metrics = inference_on_dataset(exported, loader, evaluator)
        print_csv_format(metrics)
    return {"path": path, "files": files, "parity": parity, "problems": problems,
            "metrics": metrics}
