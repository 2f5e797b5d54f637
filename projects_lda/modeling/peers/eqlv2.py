"""
EQLv2 (Equalization Loss v2) as a Fast R-CNN box predictor.

Paper: J. Tan, X. Lu, G. Zhang, C. Yin, Q. Li, "Equalization Loss v2: A New Gradient Balance
Approach for Long-tailed Object Detection", CVPR 2021 (arXiv:2012.08548).

The classifier is a set of C independent sigmoid tasks. For task j the gradient of the binary
cross-entropy with respect to its logit z_j is ``p_j - 1`` on a positive sample (y_j = 1) and
``p_j`` on a negative one, p_j = sigmoid(z_j). EQLv2 reweights the two parts at iteration t::

    positive gradients x q_j(t),   q_j(t) = 1 + alpha * (1 - f(g_j(t)))
    negative gradients x r_j(t),   r_j(t) = f(g_j(t))
    f(x) = 1 / (1 + exp(-gamma * (x - mu)))            gamma = 12, mu = 0.8, alpha = 4 (LVIS)

where ``g_j(t)`` is the ratio of the positive to the negative gradient magnitudes of task j,
accumulated over iterations 1..t-1. Reweighting a gradient is done by weighting its loss term:
``L = (1/R) sum_i sum_j w_ij BCE(z_ij, y_ij)``, ``w_ij = q_j y_ij + r_j (1 - y_ij)``, R the
sampled proposals. A class that receives few positive gradients (rare) gets ``g_j`` near 0,
``r_j`` near 0 (the flood of negatives is damped) and ``q_j`` near 1 + alpha.

As in the authors' released code:

* the accumulated statistics are the magnitudes of the *reweighted* gradients,
  ``pos_j += sum_i y_ij |p_ij - 1| w_ij``, ``neg_j += sum_i (1 - y_ij) p_ij w_ij``, and
  ``g_j = pos_j / (neg_j + 1e-10)``; at the first iteration (no statistics yet) all weights are 1;
* the statistics are **summed over all workers** every iteration (all-reduce), so every worker
  uses the same weights; here they are buffers (``pos_grad``, ``neg_grad``, ``grad_steps``),
  saved in checkpoints so a resumed run continues with them, and float64 (float32 sums stop
  growing once they reach about 1e7 times the size of one step's increment);
* **background**: the paper's category-agnostic (objectness) task is a (C+1)-th sigmoid logit
  whose target is 1 for background proposals, with weights 1 and no statistics. At test time
  ``score_c = sigmoid(z_c) * (1 - sigmoid(z_bg))`` and the background column (last, as the
  parent's ``fast_rcnn_inference`` expects) is ``sigmoid(z_bg)``;
* the classifier starts with zero bias (``PRIOR_PROB`` = 0.5) and normal(0, 0.01) weights.
"""
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec

from ..common import all_reduce_sum, prior_bias
from ..output_layers import LongTailOutputLayers

__all__ = ["eqlv2_map", "EQLv2FastRCNNOutputLayers"]

_RATIO_EPS = 1e-10


def eqlv2_map(g: torch.Tensor, gamma: float, mu: float) -> torch.Tensor:
    """``f(g) = 1 / (1 + exp(-gamma (g - mu)))``, the negative weight r_j of EQLv2."""
    return torch.sigmoid(gamma * (g - mu))


class EQLv2FastRCNNOutputLayers(LongTailOutputLayers):
    """
    Fast R-CNN outputs with C class sigmoids plus a background sigmoid, trained with EQLv2 (see
    the module docstring). ``forward`` returns ``(logits (R, C + 1), proposal_deltas)``; losses
    are ``loss_cls`` and ``loss_box_reg``; :meth:`inference` is the parent's.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        gamma: float = 12.0,
        mu: float = 0.8,
        alpha: float = 4.0,
        prior_prob: float = 0.5,
        **kwargs,
    ):
        """
        Args:
            gamma, mu, alpha, prior_prob: ``MODEL.PEERS.EQLV2.*``.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        C = self.num_classes
        # cls_score keeps the parent's C + 1 outputs: C class logits, then the background logit
        nn.init.normal_(self.cls_score.weight, std=0.01)
        with torch.no_grad():
            self.cls_score.bias[:C].fill_(prior_bias(prior_prob))
            self.cls_score.bias[C:].zero_()
        self.gamma = gamma
        self.mu = mu
        self.alpha = alpha
        # accumulated gradient magnitudes of the C class tasks, summed over workers
        self.register_buffer("pos_grad", torch.zeros(C, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(C, dtype=torch.float64))
        # number of accumulation steps; 0 = no statistics yet (all weights 1)
        self.register_buffer("grad_steps", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        eql = cfg.MODEL.PEERS.EQLV2
        ret.update(
            {"gamma": eql.GAMMA, "mu": eql.MU, "alpha": eql.ALPHA, "prior_prob": eql.PRIOR_PROB}
        )
        return ret

    # ---------------------------------------------------------------------------- weights
    def gradient_ratio(self) -> torch.Tensor:
        """(C,) float64 ``g_j = pos_j / (neg_j + 1e-10)`` of the accumulated statistics."""
        return self.pos_grad / (self.neg_grad + _RATIO_EPS)

    def class_weights(self):
        """
        ``(q, r)``: (C,) float32 positive and negative weights of the class tasks for the
        current iteration (ones before the first accumulation).
        """
        r = eqlv2_map(self.gradient_ratio(), self.gamma, self.mu).float()
        q = 1 + self.alpha * (1 - r)
        # chosen on the device: reading grad_steps on the host would wait for it every step
        started = self.grad_steps > 0
        return (torch.where(started, q, torch.ones_like(q)),
                torch.where(started, r, torch.ones_like(r)))

    @torch.no_grad()
    def accumulate(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor):
        """
        Adds this iteration's reweighted gradient magnitudes of the C class tasks, summed over
        all workers (every worker must call this once per iteration).
        """
        C = self.num_classes
        prob = torch.sigmoid(logits[:, :C].double())
        t = target[:, :C].double()
        w = weight[:, :C].double()
        pos = (t * (1 - prob) * w).sum(dim=0)  # |p - 1| on positives
        neg = ((1 - t) * prob * w).sum(dim=0)  # |p| on negatives
        stats = all_reduce_sum(torch.stack([pos, neg]).to(self.pos_grad.device))
        self.pos_grad += stats[0]
        self.neg_grad += stats[1]
        self.grad_steps += 1

    # ---------------------------------------------------------------------------- outputs
    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, C + 1): ``sigmoid(z_c) (1 - sigmoid(z_bg))``, then ``sigmoid(z_bg)``."""
        p = torch.sigmoid(logits)
        bg = p[:, -1:]
        return torch.cat([p[:, :-1] * (1 - bg), bg], dim=1)

    def classification_losses(self, logits, gt_classes, scalars):
        C = self.num_classes
        R = gt_classes.numel()
        valid = (gt_classes >= 0) & (gt_classes <= C)  # C = background target (last column)
        # one-hot rows by scatter (an invalid label's row stays zero): no boolean indexing
        target = torch.zeros_like(logits).scatter_(
            1, gt_classes.clamp(0, C).unsqueeze(1), valid.unsqueeze(1).to(logits.dtype)
        )

        q, r = self.class_weights()
        ones = q.new_ones(1)
        pos_w = torch.cat([q, ones]).to(logits.dtype)  # background task: weights 1
        neg_w = torch.cat([r, ones]).to(logits.dtype)
        weight = pos_w * target + neg_w * (1 - target)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss_cls = (bce * weight).sum() / max(R, 1)

        self.accumulate(logits.detach(), target, weight)
        scalars.put("eqlv2/pos_weight_mean", q.mean())
        scalars.put("eqlv2/neg_weight_mean", r.mean())
        return {"loss_cls": loss_cls}
