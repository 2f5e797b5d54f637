"""
Balanced softmax as a Fast R-CNN box predictor.

Paper: J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi, H. Li, "Balanced Meta-Softmax for
Long-Tailed Visual Recognition", NeurIPS 2020 (arXiv:2007.10740).

Balanced softmax models the training label distribution as a label shift of the balanced test
one: if the classifier's softmax ``phi_j = e^{z_j} / sum_k e^{z_k}`` estimates the balanced
posterior, the training posterior is ``n_j e^{z_j} / sum_k n_k e^{z_k}`` (the paper's balanced
softmax, n_j the training sample count of class j). Training minimises the cross-entropy of the
latter, i.e. a plain cross-entropy on ``z_j + log n_j``; at test time the plain logits z give the
balanced posterior.

**Background.** A detector's label set has C classes plus background, and "balanced" must not
mean that background becomes as rare as one class. We take as target distribution the one that
keeps the training share of background and spreads the foreground share uniformly over the C
classes. The training prior is ``P_u(j) = (1 - beta) n_j / sum_k n_k`` and
``P_u(bg) = beta``; the balanced one ``P_b(j) = (1 - beta) / C`` and ``P_b(bg) = beta``. The
label-shift correction is ``log P_u(y) - log P_b(y)``, so the training logits are::

    z_j + log(C n_j / sum_k n_k)    for the C classes
    z_bg                            for background (the background fraction beta cancels)

applied to every sampled proposal, foreground or background (the label-shift model holds for all
of them). With balanced n, the correction is zero and the loss is the baseline's. Up to a shift
shared by all the foreground logits, this is the paper's ``z_j + log n_j``; the shift only fixes
the foreground/background balance. A class with n_j = 0 (no training sample: never a label)
is given the smallest positive count, so every logit stays finite.

Choices:

* n_j are instance counts of ``DATASETS.TRAIN``; by default (``FREQ_SOURCE: "sampled"``) weighted
  by the repeat factors of ``RepeatFactorTrainingSampler`` when it is used, i.e. the label
  distribution the classifier is trained on (correcting the raw counts would balance twice).
  They are computed at the first training step and saved in checkpoints (buffer
  ``class_freq``); inference does not need them.
* Loss normalisation as detectron2's: the mean over the R sampled proposals.
* The authors' LVIS code fine-tunes a sigmoid variant of the classifier in a decoupled second
  stage (with their meta sampler); this is the paper's softmax form, trained end to end like
  the other methods here.
"""
import torch
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cross_entropy
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from ..class_freq_buffer import ClassFreqBufferMixin, ClassFreqSpec
from .common import add_box_reg_and_weight, log_classification_stats, parse_proposals
from .frequencies import instance_frequency_provider

__all__ = ["balanced_logit_adjustment", "BalancedSoftmaxFastRCNNOutputLayers"]


def balanced_logit_adjustment(class_freq: torch.Tensor) -> torch.Tensor:
    """
    (C + 1,) offsets added to the logits in training: ``log(C n_j / sum_k n_k)`` for the C
    classes (zero counts replaced by the smallest positive count), then 0 for background.
    """
    n = class_freq.to(torch.float32)
    positive = n > 0
    if not positive.any():
        raise ValueError("class frequencies are all zero: no class has a training sample")
    n = torch.where(positive, n, n[positive].min())
    adjust = torch.log(n * n.numel() / n.sum())
    return torch.cat([adjust, adjust.new_zeros(1)])


class BalancedSoftmaxFastRCNNOutputLayers(ClassFreqBufferMixin, FastRCNNOutputLayers):
    """
    detectron2's (C + 1)-way softmax predictor trained with balanced softmax (see the module
    docstring). ``forward``, :meth:`predict_probs` and :meth:`inference` are the parent's (plain
    logits at test time); losses are ``loss_cls`` and ``loss_box_reg``.
    """

    class_freq_description = "balanced-softmax class frequencies"

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, class_freq: ClassFreqSpec = None, **kwargs):
        """
        Args:
            class_freq: (C,) training class frequencies n_j, a callable returning them at the
                first training step, or None when they will come from a checkpoint.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        self.init_class_freq(self.num_classes, class_freq)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        source = cfg.MODEL.PEERS.BALANCED_SOFTMAX.FREQ_SOURCE
        # computed from cfg.DATASETS.TRAIN at the first training step, unless a checkpoint
        # already provided them
        ret["class_freq"] = instance_frequency_provider(
            cfg, source, "MODEL.PEERS.BALANCED_SOFTMAX.FREQ_SOURCE"
        )
        return ret

    def logit_adjustment(self) -> torch.Tensor:
        """(C + 1,) training offsets, see :func:`balanced_logit_adjustment`."""
        return balanced_logit_adjustment(self.get_class_freq())

    def losses(self, predictions, proposals):
        scores, proposal_deltas = predictions
        gt_classes, proposal_boxes, gt_boxes = parse_proposals(proposals, proposal_deltas.device)
        adjusted = scores + self.logit_adjustment().to(scores.dtype)
        with torch.no_grad():  # metrics of the test-time classifier: plain logits
            log_classification_stats(F.softmax(scores, dim=1), gt_classes)
        cls_losses = {
            "loss_cls": cross_entropy(adjusted, gt_classes, reduction="mean"),
        }
        return add_box_reg_and_weight(
            self, cls_losses, proposal_boxes, gt_boxes, proposal_deltas, gt_classes
        )
