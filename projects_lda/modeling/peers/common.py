"""Helpers shared by the peer box predictors: proposal parsing, cross-worker sums, logging."""
import math
from typing import Dict

import torch

from detectron2.utils.events import get_event_storage

from ..common import all_reduce_sum, parse_proposals  # noqa: F401  (re-exported)

__all__ = [
    "parse_proposals",
    "all_reduce_sum",
    "put_scalars",
    "log_classification_stats",
    "prior_bias",
    "add_box_reg_and_weight",
]


def put_scalars(**scalars: float) -> None:
    """Writes scalars to the event storage; does nothing outside a training loop (unit tests)."""
    try:
        storage = get_event_storage()
    except AssertionError:
        return
    for name, value in scalars.items():
        storage.put_scalar(name, float(value))


@torch.no_grad()
def log_classification_stats(probs: torch.Tensor, gt_classes: torch.Tensor) -> None:
    """
    detectron2's ``fast_rcnn/cls_accuracy``, ``fg_cls_accuracy`` and ``false_negative``, from the
    (R, C + 1) scores that inference would use (background last), so every predictor reports
    the same metrics whatever its activation.
    """
    n = gt_classes.numel()
    if n == 0:
        return
    bg = probs.shape[1] - 1
    pred = probs.argmax(dim=1)
    fg = (gt_classes >= 0) & (gt_classes < bg)
    num_fg = int(fg.sum())
    stats: Dict[str, float] = {
        "fast_rcnn/cls_accuracy": (pred == gt_classes).sum().item() / n,
    }
    if num_fg > 0:
        stats["fast_rcnn/fg_cls_accuracy"] = (pred[fg] == gt_classes[fg]).sum().item() / num_fg
        stats["fast_rcnn/false_negative"] = (pred[fg] == bg).sum().item() / num_fg
    put_scalars(**stats)


def prior_bias(prior_prob: float) -> float:
    """The logit ``log(p / (1 - p))``: the bias that makes a sigmoid output ``p`` initially."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"PRIOR_PROB must be in (0, 1), got {prior_prob}")
    return math.log(prior_prob / (1.0 - prior_prob))


def add_box_reg_and_weight(predictor, cls_losses: Dict[str, torch.Tensor], proposal_boxes,
                           gt_boxes, proposal_deltas, gt_classes) -> Dict[str, torch.Tensor]:
    """
    The classification losses of a peer predictor plus detectron2's ``loss_box_reg``, each
    multiplied by its weight in ``predictor.loss_weight`` (1 when absent), as the parent's
    ``FastRCNNOutputLayers.losses`` returns them.
    """
    losses = dict(cls_losses)
    losses["loss_box_reg"] = predictor.box_reg_loss(
        proposal_boxes, gt_boxes, proposal_deltas, gt_classes
    )
    return {k: v * predictor.loss_weight.get(k, 1.0) for k, v in losses.items()}
