"""
Seesaw loss as a Fast R-CNN box predictor.

Paper: J. Wang, W. Zhang, Y. Zang, Y. Cao, J. Pang, T. Gong, K. Chen, Z. Liu, C. C. Loy, D. Lin,
"Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021 (arXiv:2008.10032).

For a foreground sample of class i with class logits z (C classes), the seesaw loss is a softmax
cross-entropy in which the other classes' exponentials are scaled by S_ij::

    L_seesaw = -log sigma_hat_i,   sigma_hat_i = e^{z_i} / (sum_{j != i} S_ij e^{z_j} + e^{z_i})
    S_ij = M_ij * C_ij
    M_ij = (N_j / N_i) ** p   if N_i > N_j else 1      mitigation (p = 0.8)
    C_ij = (s_j / s_i) ** q   if s_j > s_i else 1      compensation (q = 2)

``N_k`` is the number of training samples (foreground proposals) of class k *accumulated during
training*, and ``s = softmax(z)`` the sample's predicted probabilities (no gradient flows through
the factors). Equivalently, the loss is a plain cross-entropy on the logits
``z_j + log S_ij`` (j != i). The mitigation factor lowers the penalty a head-class sample puts on
a rarer class j; the compensation factor restores it when the sample is misclassified as j.

Choices, following the paper and its reference implementation (mmdetection):

* **Background**: the paper trains the C-way seesaw classifier on foreground proposals only, and
  foreground vs background with a separate 2-way objectness classifier (softmax CE on all
  sampled proposals). The classifier here has C + 2 outputs: C class logits, then the
  objectness logits [foreground, background]. At test time
  ``score_c = softmax(z)_c * P(foreground)``, and the background column (last, as the parent's
  ``fast_rcnn_inference`` expects) is ``P(background)``. This objectness branch is the same
  construct as LDA's FgBg classifier (:mod:`projects_lda.modeling.output_layers`).
* Both losses are sums divided by the number of sampled proposals R (``loss_cls_classes`` over
  the foreground ones, ``loss_cls_objectness`` over all), as mmdetection and detectron2
  normalise the classification loss.
* ``N`` is a float64 buffer ``cum_samples`` (saved in checkpoints), updated with the batch's
  labels *before* the factors are computed, and clamped to >= 1 in the ratios. Unlike
  mmdetection (where every GPU counts only its own samples), the batch counts are **summed over
  all workers**, so every worker uses the same factors.
* ``s_i`` is clamped to >= ``EPS`` (1e-2) in the ratio of C_ij, as in mmdetection.
* **Normalized linear** classifier (``NORMED_LINEAR``, on by default, as in the paper's LVIS
  models): ``z = tau * cos(x, w) + b`` with tau = ``TEMPERATURE`` = 20 (mmdetection's config),
  applied to all C + 2 outputs as mmdetection does.
"""
import torch
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec

from ..common import all_reduce_sum
from ..layers import make_classifier
from ..output_layers import LongTailOutputLayers, fgbg_loss, fgbg_probs, log_fgbg_accuracy

__all__ = ["seesaw_factors", "seesaw_cross_entropy", "SeesawFastRCNNOutputLayers"]


def seesaw_factors(
    logits: torch.Tensor,
    labels: torch.Tensor,
    cum_samples: torch.Tensor,
    p: float,
    q: float,
    eps: float,
) -> torch.Tensor:
    """
    ``S[n, j] = M_{y_n j} * C_{y_n j}`` for foreground samples n with labels y (1 on the label's
    own column). No gradient.

    Args:
        logits: (F, C) class logits of the foreground samples.
        labels: (F,) their classes in [0, C).
        cum_samples: (C,) accumulated sample counts N.
        p, q, eps: mitigation exponent, compensation exponent, lower bound on s_i.
    """
    with torch.no_grad():
        S = logits.new_ones(logits.shape)
        if p > 0:
            n = cum_samples.to(logits.device, torch.float64).clamp(min=1)
            ratio = n[None, :] / n[labels][:, None]  # N_j / N_i
            M = torch.where(ratio < 1, ratio.pow(p), torch.ones_like(ratio))
            S = S * M.to(logits.dtype)
        if q > 0:
            s = F.softmax(logits.detach(), dim=1)
            s_i = s.gather(1, labels[:, None]).clamp(min=eps)
            ratio = s / s_i  # s_j / s_i
            S = S * torch.where(ratio > 1, ratio.pow(q), torch.ones_like(ratio))
        S.scatter_(1, labels[:, None], 1.0)
    return S


def seesaw_cross_entropy(logits, labels, cum_samples, p, q, eps) -> torch.Tensor:
    """(F,) per-sample seesaw loss ``-log sigma_hat_y``: CE on ``z_j + log S_yj``."""
    S = seesaw_factors(logits, labels, cum_samples, p, q, eps)
    return F.cross_entropy(logits + S.log(), labels, reduction="none")


class SeesawFastRCNNOutputLayers(LongTailOutputLayers):
    """
    Fast R-CNN outputs with a C-way seesaw classifier and a 2-way objectness classifier (see the
    module docstring). ``forward`` returns ``(logits (R, C + 2), proposal_deltas)``; losses are
    ``loss_cls_classes``, ``loss_cls_objectness`` and ``loss_box_reg``; :meth:`inference` is the
    parent's.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        p: float = 0.8,
        q: float = 2.0,
        eps: float = 0.01,
        normed_linear: bool = True,
        temperature: float = 20.0,
        **kwargs,
    ):
        """
        Args:
            p, q, eps, normed_linear, temperature: ``MODEL.PEERS.SEESAW.*``.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        C = self.num_classes
        in_features = self.cls_score.in_features
        self.cls_score = make_classifier(in_features, C + 2, normed_linear, temperature)
        self.p = p
        self.q = q
        self.eps = eps
        # N_k: foreground proposals of each class seen so far, summed over workers
        self.register_buffer("cum_samples", torch.zeros(C, dtype=torch.float64))

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        s = cfg.MODEL.PEERS.SEESAW
        ret.update(
            {
                "p": s.P,
                "q": s.Q,
                "eps": s.EPS,
                "normed_linear": s.NORMED_LINEAR,
                "temperature": s.TEMPERATURE,
            }
        )
        return ret

    @torch.no_grad()
    def accumulate(self, fg_labels: torch.Tensor) -> None:
        """Adds the batch's foreground labels to ``cum_samples`` (summed over all workers)."""
        # index_add_, not bincount: bincount reads the labels' maximum back to the host on a GPU
        counts = self.cum_samples.new_zeros(self.num_classes).index_add_(
            0, fg_labels, self.cum_samples.new_ones(fg_labels.numel())
        )
        self.cum_samples += all_reduce_sum(counts)

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, C + 1): ``softmax(z)_c * P(fg)``, then ``P(bg)`` (the FgBg branch's fused score)."""
        C = self.num_classes
        return fgbg_probs(logits[:, :C], logits[:, C:])

    def classification_losses(self, logits, gt_classes, scalars):
        C = self.num_classes
        normalizer = max(gt_classes.numel(), 1)
        fg = (gt_classes >= 0) & (gt_classes < C)
        fg_rows = fg.nonzero().squeeze(1)  # one host read per step, reused
        fg_labels = gt_classes[fg_rows]
        class_logits, objectness = logits[:, :C], logits[:, C:]

        self.accumulate(fg_labels)
        loss_classes = (
            seesaw_cross_entropy(
                class_logits[fg_rows], fg_labels, self.cum_samples, self.p, self.q, self.eps
            ).sum()
            / normalizer
        )
        loss_objectness = fgbg_loss(objectness, fg)
        log_fgbg_accuracy("seesaw/objectness_accuracy", objectness, fg, scalars)
        return {"loss_cls_classes": loss_classes, "loss_cls_objectness": loss_objectness}
