"""
The LDA box predictor: FgBg + unbalanced + balanced classifiers, a projection head, and
detectron2's box regression (paper, Appendix B and Fig. 7).
"""
from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cross_entropy
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.utils.events import get_event_storage

from .balance_factor import AccuracyWindow
from .class_freq_buffer import ClassFreqBufferMixin, ClassFreqSpec
from ..data.class_freq import frequency_provider
from .common import parse_proposals
from .layers import NormedLinear
from .lda_loss import (
    weighted_cross_entropy,
    importance_weights,
    inter_class_loss,
    intra_class_loss,
)

__all__ = ["LDALogits", "LDAFastRCNNOutputLayers"]


class LDALogits(NamedTuple):
    """Classification outputs of the LDA predictor for R proposals."""

    fgbg: torch.Tensor  # (R, 2): [foreground, background]
    balanced: torch.Tensor  # (R, C)
    unbalanced: Optional[torch.Tensor] = None  # (R, C); training only
    projection: Optional[torch.Tensor] = None  # (R, PROJ_DIM); training only


class LDAFastRCNNOutputLayers(ClassFreqBufferMixin, FastRCNNOutputLayers):
    """
    Replaces the (C+1)-way classifier of Fast R-CNN by

    1. a FgBg classifier trained with cross-entropy on all sampled proposals;
    2. an unbalanced C-way classifier ``g_u``: plain cross-entropy on foreground proposals;
    3. a balanced C-way classifier ``g_b``: importance-weighted cross-entropy (Eq. 5) on
       foreground proposals, weighted by the self-adaptive balance factor alpha (Eq. 6);
    4. a projection head whose outputs feed the intra- and inter-class losses (Eq. 7, 8).

    ``forward`` returns ``(LDALogits, proposal_deltas)``. At test time only the FgBg and balanced
    classifiers run, and the score of class c is ``p_fg * softmax(g_b)_c`` (``predict_probs``),
    so :meth:`inference` is the parent's, with the parent's contract.
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
        inter_weighting: str = "mean",
        window: int = 100,
        alpha_units: str = "fraction",
        alpha_mode: str = "adaptive",
        fixed_alpha: float = 1.0,
        balanced_loss_factor: float = 1.0,
        balanced_loss_norm: str = "mean",
        fg_loss_normalizer: str = "proposals",
        proj_dim: int = 128,
        proj_hidden_dim: int = 0,
        fgbg_loss_weight: float = 1.0,
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
            gamma, divergence_weight (lambda), margin (m), inter_weighting, window, alpha_units,
            alpha_mode, fixed_alpha, balanced_loss_factor, balanced_loss_norm,
            fg_loss_normalizer, proj_dim, proj_hidden_dim, fgbg_loss_weight,
            unbalanced_loss_weight, normed_linear, temperature: see
                :func:`projects_lda.add_lda_config`, one key each.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        _check_choice("MODEL.LDA.INTER_WEIGHTING", inter_weighting, ("mean", "class_weight"))
        _check_choice("MODEL.LDA.ALPHA_UNITS", alpha_units, ("fraction", "percent"))
        _check_choice("MODEL.LDA.ALPHA_MODE", alpha_mode, ("adaptive", "fixed"))
        _check_choice("MODEL.LDA.BALANCED_LOSS_NORM", balanced_loss_norm, ("mean", "sum"))
        _check_choice(
            "MODEL.LDA.FG_LOSS_NORMALIZER", fg_loss_normalizer, ("proposals", "foreground")
        )
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
        if proj_hidden_dim > 0:
            self.projection = nn.Sequential(
                nn.Linear(input_size, proj_hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(proj_hidden_dim, proj_dim),
            )
        else:
            self.projection = nn.Linear(input_size, proj_dim)
        if not normed_linear:  # NormedLinear initialises itself the same way
            for layer in [self.fgbg_score, self.unbalanced_score, self.balanced_score]:
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

        self.gamma = gamma
        self.divergence_weight = divergence_weight
        self.margin = margin
        self.inter_weighting = inter_weighting
        self.alpha_mode = alpha_mode
        self.fixed_alpha = fixed_alpha
        self.balanced_loss_factor = balanced_loss_factor
        self.balanced_loss_norm = balanced_loss_norm
        self.fg_loss_normalizer = fg_loss_normalizer
        self.fgbg_loss_weight = fgbg_loss_weight
        self.unbalanced_loss_weight = unbalanced_loss_weight
        self.accuracy_window = AccuracyWindow(window, gamma, percent=alpha_units == "percent")

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
                "inter_weighting": lda.INTER_WEIGHTING,
                "window": lda.WINDOW,
                "alpha_units": lda.ALPHA_UNITS,
                "alpha_mode": lda.ALPHA_MODE,
                "fixed_alpha": lda.FIXED_ALPHA,
                "balanced_loss_factor": lda.BALANCED_LOSS_FACTOR,
                "balanced_loss_norm": lda.BALANCED_LOSS_NORM,
                "fg_loss_normalizer": lda.FG_LOSS_NORMALIZER,
                "proj_dim": lda.PROJ_DIM,
                "proj_hidden_dim": lda.PROJ_HIDDEN_DIM,
                "fgbg_loss_weight": lda.LOSS_WEIGHT_FGBG,
                "unbalanced_loss_weight": lda.LOSS_WEIGHT_UNBALANCED,
                "normed_linear": lda.NORMED_LINEAR,
                "temperature": lda.TEMPERATURE,
            }
        )
        return ret

    # ---------------------------------------------------------------------------- frequencies
    def _balanced_weights(self) -> torch.Tensor:
        freq = self.get_class_freq()
        weights = importance_weights(freq)
        if self.balanced_loss_norm == "sum":  # released code: 1 / (C' n_k) = beta(k) / N
            weights = weights / freq.sum()
        return weights

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

    def predict_probs(self, predictions, proposals):
        """
        Returns per-image (R_i, C + 1) probabilities: ``p_fg * p_balanced(c)`` for the C classes
        and ``p_bg`` last, the layout detectron2's ``fast_rcnn_inference`` expects.
        """
        logits, _ = predictions
        p_fgbg = F.softmax(logits.fgbg, dim=-1)
        probs = torch.cat(
            [p_fgbg[:, :1] * F.softmax(logits.balanced, dim=-1), p_fgbg[:, 1:]], dim=1
        )
        return probs.split([len(p) for p in proposals], dim=0)

    # ---------------------------------------------------------------------------- losses
    def current_alpha(self) -> float:
        if self.alpha_mode == "fixed":
            return float(self.fixed_alpha)
        return self.accuracy_window.alpha()

    def losses(self, predictions, proposals):
        logits, proposal_deltas = predictions
        C = self.num_classes
        gt_classes, proposal_boxes, gt_boxes = parse_proposals(proposals, proposal_deltas.device)

        fg = (gt_classes >= 0) & (gt_classes < C)
        fg_labels = gt_classes[fg]
        # FgBg classifier, all proposals: target 0 = foreground, 1 = background
        loss_fgbg = cross_entropy(logits.fgbg, (~fg).long(), reduction="mean")
        unbalanced, balanced = logits.unbalanced[fg], logits.balanced[fg]
        if self.fg_loss_normalizer == "proposals":
            normalizer = max(gt_classes.numel(), 1)
        else:
            normalizer = max(fg_labels.numel(), 1)
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
        weights = self._balanced_weights()
        loss_balanced = weighted_cross_entropy(
            balanced, fg_labels, weights, 1.0 if self.balanced_loss_norm == "sum" else normalizer
        )

        z = logits.projection[fg]
        loss_intra = intra_class_loss(z, fg_labels)
        loss_inter = inter_class_loss(
            z,
            fg_labels,
            margin=self.margin,
            class_weights=weights if self.inter_weighting == "class_weight" else None,
        )
        self._log(logits.fgbg, fg, alpha)
        return {
            "loss_fgbg": self.fgbg_loss_weight * loss_fgbg,
            "loss_cls_unbalanced": self.unbalanced_loss_weight * loss_unbalanced,
            "loss_cls_balanced": self.balanced_loss_factor * alpha * loss_balanced,
            "loss_intra": self.divergence_weight * loss_intra,
            "loss_inter": self.divergence_weight * loss_inter,
            "loss_box_reg": self.loss_weight.get("loss_box_reg", 1.0)
            * self.box_reg_loss(proposal_boxes, gt_boxes, proposal_deltas, gt_classes),
        }

    def _log(self, fgbg_logits, fg, alpha):
        try:
            storage = get_event_storage()
        except AssertionError:  # called outside a training loop (e.g. in a unit test)
            return
        acc_u, acc_b = self.accuracy_window.accuracies()
        storage.put_scalar("lda/alpha", alpha)
        storage.put_scalar("lda/acc_unbalanced", acc_u)
        storage.put_scalar("lda/acc_balanced", acc_b)
        if fg.numel():
            pred_fg = fgbg_logits.argmax(dim=1) == 0
            storage.put_scalar("lda/fgbg_accuracy", (pred_fg == fg).float().mean().item())


def _check_choice(key, value, choices):
    if value not in choices:
        raise ValueError(f"{key} must be one of {choices}, got {value!r}")
