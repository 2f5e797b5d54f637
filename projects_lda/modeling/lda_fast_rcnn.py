"""
The LDA box predictor: FgBg + unbalanced + balanced classifiers, a projection head, and
detectron2's box regression (paper, Appendix B and Fig. 7).
"""
from typing import NamedTuple, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec

from ..data.class_freq import frequency_provider
from .balance_factor import AccuracyWindow
from .class_freq_buffer import ClassFreqBufferMixin, ClassFreqSpec
from .common import put_scalars
from .layers import NormedLinear
from .lda_loss import (
    weighted_cross_entropy,
    importance_weights,
    inter_class_loss,
    intra_class_loss,
)
from .output_layers import LongTailOutputLayers, fgbg_loss, fgbg_probs, log_fgbg_accuracy

__all__ = ["LDALogits", "LDAFastRCNNOutputLayers"]


class LDALogits(NamedTuple):
    """Classification outputs of the LDA predictor for R proposals."""

    fgbg: torch.Tensor  # (R, 2): [foreground, background]
    balanced: torch.Tensor  # (R, C)
    unbalanced: Optional[torch.Tensor] = None  # (R, C); training only
    projection: Optional[torch.Tensor] = None  # (R, PROJ_DIM); training only


class LDAFastRCNNOutputLayers(ClassFreqBufferMixin, LongTailOutputLayers):
    """
    Replaces the (C+1)-way classifier of Fast R-CNN by

    1. a FgBg classifier trained with cross-entropy on all sampled proposals;
    2. an unbalanced C-way classifier ``g_u``: plain cross-entropy on foreground proposals;
    3. a balanced C-way classifier ``g_b``: importance-weighted cross-entropy (Eq. 5) on
       foreground proposals, weighted by the self-adaptive balance factor alpha (Eq. 6);
    4. a projection head whose outputs feed the intra- and inter-class losses (Eq. 7, 8).

    ``forward`` returns ``(LDALogits, proposal_deltas)``. At test time only the FgBg and balanced
    classifiers run, and the score of class c is ``p_fg * softmax(g_b)_c`` (:meth:`class_probs`),
    so :meth:`inference` is the parent's, with the parent's contract.

    The foreground losses ``L_u`` and ``L_b`` are sums over the foreground proposals divided by
    the number R of all sampled proposals, as detectron2 normalises its losses (docs/design.md).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        class_freq: ClassFreqSpec = None,
        gamma: float = 1.5,
        divergence_weight: float = 0.1,
        margin: float = 1.0,
        window: int = 100,
        fixed_alpha: float = -1.0,
        balanced_loss_factor: float = 5.0,
        proj_dim: int = 128,
        unbalanced_loss_weight: float = 1.0,
        normed_linear: bool = False,
        temperature: float = 20.0,
        **kwargs,
    ):
        """
        Args:
            class_freq: (C,) training class frequencies n_k, or a callable returning them when
                first needed in training (so that ``--eval-only`` never loads the training set:
                the frequencies are a buffer saved in the checkpoint), or None when they will
                come from a checkpoint.
            gamma, divergence_weight (lambda), margin (m), window, fixed_alpha (< 0: the
            self-adaptive alpha), balanced_loss_factor, proj_dim, unbalanced_loss_weight,
            normed_linear, temperature: see :func:`projects_lda.add_lda_config`, one key each;
                the defaults are the config's.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        C = self.num_classes
        input_size = self.bbox_pred.in_features
        del self.cls_score  # replaced by the three classifiers below
        # The order of construction is the order of the random draws: it is kept as it was when
        # the committed benchmarks ran, so that a seed reproduces them.
        if normed_linear:
            self.fgbg_score = NormedLinear(input_size, 2, temperature)
            self.unbalanced_score = NormedLinear(input_size, C, temperature)
            self.balanced_score = NormedLinear(input_size, C, temperature)
        else:
            self.fgbg_score = nn.Linear(input_size, 2)
            self.unbalanced_score = nn.Linear(input_size, C)
            self.balanced_score = nn.Linear(input_size, C)
        self.projection = nn.Linear(input_size, proj_dim)
        if not normed_linear:  # NormedLinear initialises itself the same way
            for layer in [self.fgbg_score, self.unbalanced_score, self.balanced_score]:
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

        self.gamma = gamma
        self.divergence_weight = divergence_weight
        self.margin = margin
        self.fixed_alpha = fixed_alpha
        self.balanced_loss_factor = balanced_loss_factor
        self.unbalanced_loss_weight = unbalanced_loss_weight
        self.accuracy_window = AccuracyWindow(window, gamma)

        # n_k: a buffer saved with the model, filled lazily from a callable in training
        self.init_class_freq(C, class_freq)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        lda = cfg.MODEL.LDA
        ret.update(
            {
                # computed from cfg.DATASETS.TRAIN at the first training step, unless a
                # checkpoint already provided them
                "class_freq": frequency_provider(cfg),
                "gamma": lda.GAMMA,
                "divergence_weight": lda.LAMBDA,
                "margin": lda.MARGIN,
                "window": lda.WINDOW,
                "fixed_alpha": lda.FIXED_ALPHA,
                "balanced_loss_factor": lda.BALANCED_LOSS_FACTOR,
                "proj_dim": lda.PROJ_DIM,
                "unbalanced_loss_weight": lda.LOSS_WEIGHT_UNBALANCED,
                "normed_linear": lda.NORMED_LINEAR,
                "temperature": lda.TEMPERATURE,
            }
        )
        return ret

    # ---------------------------------------------------------------------------- forward
    def forward(self, x):
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        proposal_deltas = self.bbox_pred(x)
        logits = LDALogits(fgbg=self.fgbg_score(x), balanced=self.balanced_score(x))
        if self.training:  # g_u and the projection head are not evaluated at test time
            logits = logits._replace(
                unbalanced=self.unbalanced_score(x), projection=self.projection(x)
            )
        return logits, proposal_deltas

    def class_probs(self, logits: LDALogits) -> torch.Tensor:
        """(R, C + 1): ``p_fg * p_balanced(c)`` for the C classes and ``p_bg`` last."""
        return fgbg_probs(logits.balanced, logits.fgbg)

    # ---------------------------------------------------------------------------- losses
    def current_alpha(self) -> float:
        """alpha of Eq. 9: FIXED_ALPHA when >= 0 (ablation), else Eq. 6 over the window."""
        if self.fixed_alpha >= 0:
            return float(self.fixed_alpha)
        return self.accuracy_window.alpha()

    def classification_losses(self, logits: LDALogits, gt_classes: torch.Tensor):
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        fg_labels = gt_classes[fg]
        normalizer = max(gt_classes.numel(), 1)
        # FgBg classifier, all proposals
        loss_fgbg = fgbg_loss(logits.fgbg, fg)
        unbalanced, balanced = logits.unbalanced[fg], logits.balanced[fg]
        loss_unbalanced = weighted_cross_entropy(
            unbalanced, fg_labels, torch.ones_like(self.class_freq), normalizer
        )

        with torch.no_grad():
            self.accuracy_window.update(
                (unbalanced.argmax(dim=1) == fg_labels).sum().item(),
                (balanced.argmax(dim=1) == fg_labels).sum().item(),
                fg_labels.numel(),
            )
        alpha = self.current_alpha()
        weights = importance_weights(self.get_class_freq())
        loss_balanced = weighted_cross_entropy(balanced, fg_labels, weights, normalizer)

        z = logits.projection[fg]
        loss_intra = intra_class_loss(z, fg_labels)
        loss_inter = inter_class_loss(z, fg_labels, margin=self.margin)

        acc_u, acc_b = self.accuracy_window.accuracies()
        put_scalars(**{"lda/alpha": alpha, "lda/acc_unbalanced": acc_u, "lda/acc_balanced": acc_b})
        log_fgbg_accuracy("lda/fgbg_accuracy", logits.fgbg, fg)
        return {
            "loss_fgbg": loss_fgbg,
            "loss_cls_unbalanced": self.unbalanced_loss_weight * loss_unbalanced,
            "loss_cls_balanced": self.balanced_loss_factor * alpha * loss_balanced,
            "loss_intra": self.divergence_weight * loss_intra,
            "loss_inter": self.divergence_weight * loss_inter,
        }
