"""
The LDA box predictor: FgBg + unbalanced + balanced classifiers, a projection head, and
detectron2's box regression (paper, Appendix B and Fig. 7).
"""
from typing import NamedTuple, Optional, Union

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec

from ..data.class_freq import frequency_provider
from .balance import AccuracyWindow, current_alpha, importance_weights
from .class_freq_buffer import ClassFreqBufferMixin, ClassFreqSpec
from .layers import NormedLinear
from .lda_loss import (
    weighted_cross_entropy,
    inter_class_loss,
    intra_class_loss,
)
from .output_layers import LongTailOutputLayers, fgbg_loss, fgbg_probs, log_fgbg_accuracy

__all__ = ["LDALogits", "LDAFastRCNNOutputLayers"]


class LDALogits(NamedTuple):
    """
    Classification outputs of the LDA predictor for R proposals. At test time the FgBg and
    balanced logits; in training the FgBg logits and the box features, from which
    :meth:`LDAFastRCNNOutputLayers.classification_losses` runs ``g_u``, ``g_b`` and the
    projection head on the foreground rows only (their losses read no other row).
    """

    fgbg: torch.Tensor  # (R, 2): [foreground, background]
    balanced: Optional[torch.Tensor] = None  # (R, C); test time
    features: Optional[torch.Tensor] = None  # (R, D) box features; training


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
        fgbg = self.fgbg_score(x)
        if self.training:  # the C-way heads wait for the labels (classification_losses)
            return LDALogits(fgbg=fgbg, features=x), proposal_deltas
        return LDALogits(fgbg=fgbg, balanced=self.balanced_score(x)), proposal_deltas

    def class_probs(self, logits: LDALogits) -> torch.Tensor:
        """(R, C + 1): ``p_fg * p_balanced(c)`` for the C classes and ``p_bg`` last."""
        balanced = logits.balanced
        if balanced is None:  # training-mode outputs: g_b on every row
            balanced = self.balanced_score(logits.features)
        return fgbg_probs(balanced, logits.fgbg)

    # ---------------------------------------------------------------------------- losses
    def current_alpha(self) -> Union[float, torch.Tensor]:
        """
        alpha of Eq. 9: FIXED_ALPHA when >= 0 (ablation), else Eq. 6 over the window (a 0-dim
        tensor on the device).
        """
        return current_alpha(self.accuracy_window, self.fixed_alpha)

    def classification_losses(self, logits: LDALogits, gt_classes: torch.Tensor, scalars):
        C = self.num_classes
        fg = (gt_classes >= 0) & (gt_classes < C)
        # The step's one look at the labels from the host (the size of the foreground): the
        # C-way heads run on these rows only, and everything after keeps fixed shapes.
        fg_rows = fg.nonzero().squeeze(1)
        fg_labels = gt_classes[fg_rows]
        num_fg = fg_labels.numel()
        x = logits.features[fg_rows]
        unbalanced, balanced = self.unbalanced_score(x), self.balanced_score(x)
        z = self.projection(x)
        normalizer = max(gt_classes.numel(), 1)

        loss_fgbg = fgbg_loss(logits.fgbg, fg)  # all proposals
        loss_unbalanced = weighted_cross_entropy(
            unbalanced, fg_labels, torch.ones_like(self.class_freq), normalizer
        )
        with torch.no_grad():
            correct_u = (unbalanced.argmax(dim=1) == fg_labels).sum()
            correct_b = (balanced.argmax(dim=1) == fg_labels).sum()
            self.accuracy_window.update(correct_u, correct_b, torch.full_like(correct_u, num_fg))
        weights = self.class_stat("importance_weights", importance_weights)
        loss_balanced = weighted_cross_entropy(balanced, fg_labels, weights, normalizer)
        alpha = self.current_alpha()
        if isinstance(alpha, torch.Tensor):
            alpha = alpha.to(loss_balanced.dtype)
        loss_intra = intra_class_loss(z, fg_labels, num_classes=C)
        loss_inter = inter_class_loss(z, fg_labels, margin=self.margin, num_classes=C)

        with torch.no_grad():
            cu, cb, total = self.accuracy_window.totals()
            scalars.put("lda/alpha", alpha)
            scalars.ratio("lda/acc_unbalanced", cu, total, default=0.0)
            scalars.ratio("lda/acc_balanced", cb, total, default=0.0)
            log_fgbg_accuracy("lda/fgbg_accuracy", logits.fgbg, fg, scalars)
            # detectron2's fg metrics from the test-time score of the foreground rows
            pred = fgbg_probs(balanced, logits.fgbg[fg_rows]).argmax(dim=1)
            scalars.ratio("fast_rcnn/fg_cls_accuracy", (pred == fg_labels).sum(), num_fg)
            scalars.ratio("fast_rcnn/false_negative", (pred == C).sum(), num_fg)
        return {
            "loss_fgbg": loss_fgbg,
            "loss_cls_unbalanced": self.unbalanced_loss_weight * loss_unbalanced,
            "loss_cls_balanced": self.balanced_loss_factor * alpha * loss_balanced,
            "loss_intra": self.divergence_weight * loss_intra,
            "loss_inter": self.divergence_weight * loss_inter,
        }

    def log_classification_stats(self, scores, gt_classes, scalars):
        """
        Nothing here: :meth:`classification_losses` logs ``fast_rcnn/fg_cls_accuracy`` and
        ``false_negative`` from the foreground rows, and ``lda/fgbg_accuracy`` for all rows.
        ``fast_rcnn/cls_accuracy`` over all rows would need ``g_b`` on the background rows,
        which training does not run.
        """
