"""Helpers shared by the box predictors (LDA and the peer methods)."""
from typing import List, Tuple

import torch

from detectron2.layers import cat
from detectron2.structures import Instances

__all__ = ["parse_proposals", "all_reduce_sum"]


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
