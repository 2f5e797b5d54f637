"""Helpers shared by the box predictors (LDA and the peer methods)."""
import math
from typing import List, Optional, Tuple

import torch

from detectron2.layers import cat
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

__all__ = [
    "parse_proposals",
    "all_reduce_sum",
    "StepScalars",
    "log_classification_stats",
    "prior_bias",
]


def parse_proposals(
    proposals: List[Instances], device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    ``(gt_classes (R,), proposal_boxes (R, 4), gt_boxes (R, 4))`` of the sampled proposals, as
    ``FastRCNNOutputLayers.losses`` reads them (empty tensors when there is no proposal).
    """
    if len(proposals):
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        # background-only images have no gt_boxes; their proposals never enter the box loss
        gt_boxes = cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals],
            dim=0,
        )
    else:
        gt_classes = torch.empty(0, dtype=torch.long, device=device)
        proposal_boxes = gt_boxes = torch.empty((0, 4), device=device)
    return gt_classes, proposal_boxes, gt_boxes


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """
    Sums ``t`` over all workers (a new tensor); returns ``t`` itself in a single process. Every
    worker must call it at the same point (here: once per ``losses`` call, i.e. per iteration).
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class StepScalars:
    """
    The scalars a predictor logs in one training step, gathered as device tensors and sent to
    the event storage in one host transfer by :meth:`flush` (every ``float(tensor)`` or
    ``.item()`` would stall a GPU's stream once per scalar).

    :meth:`ratio` logs ``numerator / denominator``, or ``default`` (nothing when None) when the
    denominator is 0: the division happens on the host after the transfer.
    """

    def __init__(self):
        self._entries: List[Tuple[str, object, object, Optional[float]]] = []

    def put(self, name: str, value) -> None:
        self._entries.append((name, value, 1.0, None))

    def ratio(self, name: str, numerator, denominator, default: Optional[float] = None) -> None:
        self._entries.append((name, numerator, denominator, default))

    def flush(self) -> None:
        """Writes the gathered scalars (one transfer); nothing outside a training loop."""
        entries, self._entries = self._entries, []
        try:
            storage = get_event_storage()
        except AssertionError:
            return
        if not entries:
            return
        values = [v for _, num, den, _ in entries for v in (num, den)]
        on_device = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
        if on_device:  # the one host synchronisation
            stacked = torch.stack([values[i].detach().reshape(()).double() for i in on_device])
            for i, v in zip(on_device, stacked.tolist()):
                values[i] = v
        for i, (name, _, _, default) in enumerate(entries):
            num, den = float(values[2 * i]), float(values[2 * i + 1])
            value = num / den if den != 0 else default
            if value is not None:
                storage.put_scalar(name, value)


def log_classification_stats(
    probs: torch.Tensor, gt_classes: torch.Tensor, scalars: StepScalars
) -> None:
    """
    detectron2's ``fast_rcnn/cls_accuracy``, ``fg_cls_accuracy`` and ``false_negative``, from the
    (R, C + 1) scores that inference would use (background last), so every predictor reports
    the same metrics whatever its activation. Counted on the device, without boolean indexing.
    """
    n = gt_classes.numel()
    if n == 0:
        return
    with torch.no_grad():
        bg = probs.shape[1] - 1
        pred = probs.argmax(dim=1)
        fg = (gt_classes >= 0) & (gt_classes < bg)
        correct = pred == gt_classes
        num_fg = fg.sum()
        scalars.ratio("fast_rcnn/cls_accuracy", correct.sum(), n)
        scalars.ratio("fast_rcnn/fg_cls_accuracy", (correct & fg).sum(), num_fg)
        scalars.ratio("fast_rcnn/false_negative", ((pred == bg) & fg).sum(), num_fg)


def prior_bias(prior_prob: float) -> float:
    """The logit ``log(p / (1 - p))``: the bias that makes a sigmoid output ``p`` initially."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"PRIOR_PROB must be in (0, 1), got {prior_prob}")
    return math.log(prior_prob / (1.0 - prior_prob))
