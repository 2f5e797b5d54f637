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

from ...data.class_freq import frequency_provider
from ..class_freq_buffer import ClassFreqBufferMixin, ClassFreqSpec, validate_class_freq
from ..output_layers import LongTailOutputLayers

__all__ = ["balanced_logit_adjustment", "BalancedSoftmaxFastRCNNOutputLayers"]


def balanced_logit_adjustment(class_freq: torch.Tensor) -> torch.Tensor:
    """
    (C + 1,) offsets added to the logits in training: ``log(C n_j / sum_k n_k)`` for the C
    classes (zero counts replaced by the smallest positive count), then 0 for background.
    """
    n = validate_class_freq(class_freq)
    positive = n > 0
    n = torch.where(positive, n, n[positive].min())
    adjust = torch.log(n * n.numel() / n.sum())
    return torch.cat([adjust, adjust.new_zeros(1)])


class BalancedSoftmaxFastRCNNOutputLayers(ClassFreqBufferMixin, LongTailOutputLayers):
    """
    detectron2's (C + 1)-way softmax predictor trained with balanced softmax (see the module
    docstring). ``forward`` and :meth:`inference` are the parent's, test-time scores the softmax
    of the plain logits; losses are ``loss_cls`` and ``loss_box_reg``.
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
        ret["class_freq"] = frequency_provider(
            cfg, source, "MODEL.PEERS.BALANCED_SOFTMAX.FREQ_SOURCE"
        )
        return ret

    def logit_adjustment(self) -> torch.Tensor:
        """(C + 1,) training offsets, see :func:`balanced_logit_adjustment` (computed once)."""
        return self.class_stat("logit_adjustment", balanced_logit_adjustment)

    def class_probs(self, scores: torch.Tensor) -> torch.Tensor:
        """(R, C + 1) softmax of the plain logits, as the parent's ``predict_probs``."""
        return F.softmax(scores, dim=-1)

    def classification_losses(self, scores, gt_classes, scalars):
        adjusted = scores + self.logit_adjustment().to(scores.dtype)
        return {"loss_cls": cross_entropy(adjusted, gt_classes, reduction="mean")}
