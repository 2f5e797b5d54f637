import logging
import os

from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, LVISEvaluator

from .coco_protocol import check_protocol
from .ground_truth import training_frequencies
from .lvis_evaluation import HotcocoLVISEvaluator

BACKENDS = ("hotcoco", "lvis-api")

logger = logging.getLogger(__name__)


def model_classes(cfg):
    """
    The classes of the model evaluated (a ``ClassNames`` with a ``source``): those of the
    checkpoint ``MODEL.WEIGHTS`` when it holds them (training saves them), else those of the
    training set ``DATASETS.TRAIN[0]``, else None (the evaluated file's categories are then
    taken as the model's, in id order).
    """
    from ..data.class_names import CHECKPOINT_KEY, ClassNames, training_class_names

    weights = cfg.MODEL.WEIGHTS
    if weights.endswith((".pth", ".pyth")) and os.path.isfile(weights):
        import torch

        try:  # mmap: the tensors are not read
            stored = torch.load(weights, map_location="cpu", weights_only=True,
                                mmap=True).get(CHECKPOINT_KEY)
        except Exception as e:  # the checkpointer has loaded it already, or named the problem
            logger.warning("Could not read the class names of %s (%s)", weights, e)
            stored = None
        if stored is not None:
            names = ClassNames.from_state(stored, where=weights)
            names.source = f"the model (checkpoint {weights})"
            return names
    names = training_class_names(cfg)
    if names is not None:
        names.source = f"the model (training set {cfg.DATASETS.TRAIN[0]!r})"
    return names


def build_evaluator(cfg, dataset_name, output_folder=None):
    """
    The evaluator of a test dataset: for LVIS-type datasets the backend of
    ``cfg.TEST.LVIS_EVAL.BACKEND`` (hotcoco, streamed; or detectron2's LVISEvaluator), for
    COCO-type datasets detectron2's COCOEvaluator.
    """
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    meta = MetadataCatalog.get(dataset_name)
    evaluator_type = meta.get("evaluator_type", "lvis")
    if evaluator_type == "lvis":
        backend, metrics = cfg.TEST.LVIS_EVAL.BACKEND, tuple(cfg.TEST.LVIS_EVAL.METRICS)
        train = cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None
        protocol = cfg.TEST.LVIS_EVAL.PROTOCOL
        check_protocol(protocol)
        if backend == "hotcoco":
            return HotcocoLVISEvaluator(
                dataset_name,
                # a box-only file has no masks to evaluate whatever the model predicts
                tasks=("bbox",) if meta.get("has_masks", None) is False else None,
                output_dir=output_folder,
                max_dets_per_image=cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE,
                write_results_json=cfg.TEST.LVIS_EVAL.WRITE_RESULTS_JSON,
                metrics=metrics,
                dets_per_category=cfg.TEST.LVIS_EVAL.DETECTIONS_PER_CATEGORY,
                # r/c/f of categories the file gives no frequency: the training set's groups
                frequency=lambda: training_frequencies(train),
                report=cfg.TEST.LVIS_EVAL.REPORT,
                train_dataset=train,
                protocol=protocol,
                model_classes=model_classes(cfg),
            )
        if protocol != "lvis":
            raise ValueError(f"TEST.LVIS_EVAL.PROTOCOL {protocol!r}: the {backend} backend "
                             "follows the LVIS protocol only; COCO's is the hotcoco backend's")
        if meta.get("federated", True) is False:
            raise ValueError(f"dataset {dataset_name!r} is exhaustively annotated (no LVIS "
                             "neg_category_ids): lvis-api would ignore detections of classes "
                             "absent from an image; evaluate it with "
                             "TEST.LVIS_EVAL.BACKEND hotcoco")
        if backend == "lvis-api":  # detectron2's evaluator always writes the results JSON
            if metrics != ("standard",):
                raise ValueError(f"TEST.LVIS_EVAL.METRICS {metrics}: AP-fixed and AP-pool are "
                                 "computed by the hotcoco backend only (TEST.LVIS_EVAL.BACKEND)")
            return LVISEvaluator(
                dataset_name, output_dir=output_folder,
                max_dets_per_image=cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE,
            )
        raise ValueError(f"TEST.LVIS_EVAL.BACKEND: unknown backend {backend!r}; one of {BACKENDS}")
    if evaluator_type == "coco":
        return COCOEvaluator(dataset_name, output_dir=output_folder)
    raise ValueError(f"dataset {dataset_name!r}: no evaluator for type {evaluator_type!r}")
