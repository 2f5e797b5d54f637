"""
A trained model for inference: its weights loaded with the safe checkpointer, checked against
the config, and its class names (from the checkpoint, else from the config's datasets).
"""
import logging
from typing import Any, Dict

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.engine import DefaultPredictor

from ..data.class_names import CHECKPOINT_KEY, ClassNames, class_names_from_metadata
from ..engine.checkpoint import SafeCheckpointer

__all__ = ["Predictor", "load_inference_weights", "model_class_names", "names_metadata"]

logger = logging.getLogger(__name__)


def model_class_names(cfg, checkpoint: Dict[str, Any], weights: str) -> ClassNames:
    """
    The class names of the model of ``cfg`` loaded from ``weights``: those the checkpoint holds
    (``checkpoint`` is what the checkpointer's ``load`` returned), else those of the config's
    first registered dataset (``DATASETS.TEST``, then ``DATASETS.TRAIN``: a checkpoint written
    by detectron2 or by an older version of this project). Raises ``ValueError`` when the number
    of names differs from ``MODEL.ROI_HEADS.NUM_CLASSES`` or when no names are found.
    """
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    stored = checkpoint.get(CHECKPOINT_KEY)
    if stored is not None:
        names = ClassNames.from_state(stored, where=weights)
        source = f"checkpoint {weights} holds"
    else:
        registered = set(DatasetCatalog.list())
        datasets = [d for d in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN) if d in registered]
        names = next(
            (n for n in (class_names_from_metadata(MetadataCatalog.get(d)) for d in datasets)
             if n is not None),
            None,
        )
        if names is None:
            raise ValueError(
                f"checkpoint {weights} holds no class names (written by detectron2 or before "
                "they were saved) and none of the config's datasets "
                f"{list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)} is registered with "
                "thing_classes: register the dataset (LDA_EXTRA_DATASETS) or name one in "
                "DATASETS.TEST"
            )
        source = f"checkpoint {weights} holds no class names; dataset {datasets[0]} has"
    if len(names) != num_classes:
        raise ValueError(
            f"{source} {len(names)} classes but the config's MODEL.ROI_HEADS.NUM_CLASSES is "
            f"{num_classes}: the weights and the config are of different models"
        )
    return names


def load_inference_weights(model, cfg) -> ClassNames:
    """
    Loads ``cfg.MODEL.WEIGHTS`` into ``model`` and returns its class names. Raises ``ValueError``
    when the weights do not fit the model (tensors of another shape, or model tensors that the
    checkpoint lacks: predictions would come from initial weights).
    """
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError("MODEL.WEIGHTS: give the trained weights (path/to/model_final.pth)")
    checkpointer = SafeCheckpointer(model)
    checkpoint = checkpointer.load(weights)
    report = checkpointer.last_load_report
    if report is not None and (report.wrong_shape or report.new):
        problems = [f"{k} {tuple(c)} in the checkpoint, {tuple(m)} in the model"
                    for k, c, m in report.wrong_shape[:3]]
        if len(report.wrong_shape) > 3:
            problems.append(f"{len(report.wrong_shape) - 3} more tensors of another shape")
        wrong = {k for k, _, _ in report.wrong_shape}
        missing = [k for k in report.new if k not in wrong]
        if missing:
            problems.append(
                f"{len(missing)} model tensors missing from the checkpoint "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
            )
        raise ValueError(
            f"MODEL.WEIGHTS {weights} does not fit the config's model (MODEL.ROI_HEADS.NAME "
            f"{cfg.MODEL.ROI_HEADS.NAME}, NUM_CLASSES {cfg.MODEL.ROI_HEADS.NUM_CLASSES}): "
            + "; ".join(problems)
        )
    return model_class_names(cfg, checkpoint, weights)


def names_metadata(names: ClassNames, name: str = "model") -> Metadata:
    """A detectron2 ``Metadata`` with the model's ``thing_classes`` (for the Visualizer)."""
    return Metadata(name=name, thing_classes=list(names.thing_classes))


class Predictor(DefaultPredictor):
    """
    detectron2's ``DefaultPredictor`` (same call: a BGR ``(H, W, 3)`` uint8 image in, the
    model's ``{"instances": ...}`` out) whose weights are loaded once by
    :func:`load_inference_weights`: checked against the config, with the class names in
    :attr:`class_names` and :attr:`metadata` (from the checkpoint when it holds them).
    """

    def __init__(self, cfg):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {cfg.INPUT.FORMAT}")
        # DefaultPredictor builds the model and its resizing; it is given no weights, since its
        # checkpointer would load them unchecked and with pickle (torch.load(weights_only=False))
        no_weights = cfg.clone()
        no_weights.defrost()
        no_weights.MODEL.WEIGHTS = ""
        # its checkpointer's "No checkpoint found. Initializing model from scratch" would
        # mislead: the weights are loaded just below
        fvcore_log = logging.getLogger("fvcore.common.checkpoint")
        level = fvcore_log.level
        fvcore_log.setLevel(logging.WARNING)
        try:
            super().__init__(no_weights)
        finally:
            fvcore_log.setLevel(level)
        self.cfg = cfg.clone()
        self.class_names = load_inference_weights(self.model, self.cfg)
        self.metadata = names_metadata(self.class_names)
