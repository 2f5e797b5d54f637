"""
The base of every box predictor of this project, and the foreground/background (FgBg) branch
that LDA and Seesaw share.

A predictor is detectron2's :class:`FastRCNNOutputLayers` (box regression, ``forward`` layout,
``inference``) whose classifier and classification loss are the method's. A subclass of
:class:`LongTailOutputLayers` supplies only those two pieces:

* :meth:`~LongTailOutputLayers.class_probs`: the (R, C + 1) scores that inference uses
  (background last, the layout of detectron2's ``fast_rcnn_inference``);
* :meth:`~LongTailOutputLayers.classification_losses`: a dict of ``loss_*`` scalars.

The base does the rest the same way for every method: it reads the sampled proposals, logs
detectron2's ``fast_rcnn/cls_accuracy``, ``fg_cls_accuracy`` and ``false_negative`` from the
test-time scores (so the metrics compare across methods), adds ``loss_box_reg``, multiplies each
loss by its weight in ``loss_weight`` (1 when absent) and splits the scores per image.
"""
from typing import Dict

import torch
from torch.nn import functional as F

from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from .common import StepScalars, log_classification_stats, parse_proposals

__all__ = ["LongTailOutputLayers", "fgbg_probs", "fgbg_loss", "log_fgbg_accuracy"]


class LongTailOutputLayers(FastRCNNOutputLayers):
    """
    :class:`FastRCNNOutputLayers` with a method-specific classifier (see the module docstring).
    ``__init__``, ``from_config``, ``forward`` and :meth:`inference` are the parent's unless a
    subclass overrides them; ``inference`` keeps the parent's contract.
    """

    def class_probs(self, scores) -> torch.Tensor:
        """(R, C + 1) test-time probabilities of the C classes, then background."""
        raise NotImplementedError

    def classification_losses(
        self, scores, gt_classes: torch.Tensor, scalars: StepScalars
    ) -> Dict[str, torch.Tensor]:
        """
        The method's classification losses for the sampled proposals with labels ``gt_classes``
        (R,) in ``[0, C]`` (C = background), before the loss weights are applied. The method's
        own training scalars go to ``scalars`` (sent to the event storage once per step).
        """
        raise NotImplementedError

    def log_classification_stats(self, scores, gt_classes: torch.Tensor, scalars: StepScalars):
        """detectron2's classification metrics from the test-time scores (see the module doc)."""
        log_classification_stats(self.class_probs(scores), gt_classes, scalars)

    def predict_probs(self, predictions, proposals):
        scores, _ = predictions
        return self.class_probs(scores).split([len(p) for p in proposals], dim=0)

    def losses(self, predictions, proposals):
        scores, proposal_deltas = predictions
        gt_classes, proposal_boxes, gt_boxes = parse_proposals(proposals, proposal_deltas.device)
        scalars = StepScalars()
        losses = self.classification_losses(scores, gt_classes, scalars)
        self.log_classification_stats(scores, gt_classes, scalars)
        losses["loss_box_reg"] = self.box_reg_loss(
            proposal_boxes, gt_boxes, proposal_deltas, gt_classes
        )
        scalars.flush()
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}


# ------------------------------------------------------------------ the FgBg (objectness) branch
# LDA's FgBg classifier (paper, Appendix B) and Seesaw's objectness classifier are the same
# construct: a 2-way softmax [foreground, background] trained on all sampled proposals, whose
# P(foreground) multiplies a C-way softmax over the classes at test time.


def fgbg_probs(class_logits: torch.Tensor, fgbg_logits: torch.Tensor) -> torch.Tensor:
    """(R, C + 1): ``softmax(class_logits)_c * P(fg)`` for the C classes, then ``P(bg)``."""
    p_fgbg = F.softmax(fgbg_logits, dim=-1)
    return torch.cat([p_fgbg[:, :1] * F.softmax(class_logits, dim=-1), p_fgbg[:, 1:]], dim=1)


def fgbg_loss(fgbg_logits: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """
    Cross-entropy of the FgBg branch over all R sampled proposals (target 0 = foreground,
    1 = background), divided by R (0 when R = 0), as detectron2 normalises its classification
    loss.
    """
    return F.cross_entropy(fgbg_logits, (~fg).long(), reduction="sum") / max(fg.numel(), 1)


@torch.no_grad()
def log_fgbg_accuracy(
    name: str, fgbg_logits: torch.Tensor, fg: torch.Tensor, scalars: StepScalars
) -> None:
    """Logs the FgBg branch's accuracy over the sampled proposals as ``name`` (none if R = 0)."""
    scalars.ratio(name, ((fgbg_logits.argmax(dim=1) == 0) == fg).sum(), fg.numel())
