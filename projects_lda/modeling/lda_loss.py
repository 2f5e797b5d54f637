"""
The loss terms of LDA (Long-tailed Distribution Adaptation, ACM MM 2021) as pure functions.

Notation (paper, Sec. 3): ``C`` foreground classes, ``n_k`` the training frequency of class k,
``N = sum_k n_k``. Every function here works on plain tensors and can be tested alone; the box
predictor in :mod:`projects_lda.modeling.lda_fast_rcnn` wires them together.

Half precision (float16 / bfloat16 inputs, e.g. under ``SOLVER.AMP.ENABLED``): the losses are
computed in float32 from their inputs (class centres summed with ``index_add_`` overflow float16
at LVIS scale, and cosine similarities lose their epsilon), and returned in float32; gradients
flow back to the half-precision inputs. Only the foreground rows enter, so the casts are cheap.
"""
from typing import Optional

import torch
from torch.nn import functional as F

from .class_freq_buffer import validate_class_freq

__all__ = [
    "importance_weights",
    "weighted_cross_entropy",
    "intra_class_loss",
    "inter_class_loss",
    "class_centres",
    "balance_factor",
]


def importance_weights(class_freq: torch.Tensor) -> torch.Tensor:
    """
    Eq. 5: ``beta(k) = P_b(k) / P_u(k) = (1 / C') / (n_k / N)``, the density ratio between the
    balanced (test) and the unbalanced (training) label distributions.

    ``C'`` counts the classes with ``n_k > 0``: a class with no training sample can never be a
    label, so the balanced domain is taken over the classes that can be learned; this also makes
    ``E_u[beta] = 1`` (the weighted loss keeps the scale of a cross-entropy). Classes with
    ``n_k = 0`` get weight 0 (never inf or NaN).

    Args:
        class_freq: (C,) non-negative frequencies ``n_k`` (counts or any positive multiple).
    Returns:
        (C,) float tensor of weights.
    """
    freq = validate_class_freq(class_freq)
    present = freq > 0
    num_present = int(present.sum())
    total = freq.sum()
    safe = torch.where(present, freq, torch.ones_like(freq))
    return torch.where(present, total / (num_present * safe), torch.zeros_like(freq))


def weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor,
    normalizer: Optional[float] = None,
) -> torch.Tensor:
    """
    Weighted cross-entropy ``sum_i weights[y_i] * CE_i / normalizer``. With the importance
    weights ``beta`` it is the estimated risk of the balanced domain (Eq. 5); with unit weights,
    the empirical risk of the unbalanced domain.

    Args:
        logits: (n, C) balanced-classifier logits of the foreground samples.
        labels: (n,) labels in ``[0, C)``.
        weights: (C,) per-class weights, e.g. ``beta(k)`` from :func:`importance_weights`.
        normalizer: divides the weighted sum. None: the number of samples n (the paper's
            ``1/n sum_i beta(y_i) CE_i``); the detector uses the number of sampled proposals
            (docs/design.md).
    Returns:
        scalar; 0 (connected to ``logits``) when there is no sample.
    """
    logits = _at_least_float32(logits)
    if labels.numel() == 0:
        return logits.sum() * 0.0
    if normalizer is None:
        normalizer = labels.numel()
    if normalizer <= 0:
        raise ValueError(f"normalizer must be > 0, got {normalizer}")
    ce = F.cross_entropy(logits, labels, reduction="none")
    return (weights[labels] * ce).sum() / normalizer


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """float16 / bfloat16 to float32 (see the module docstring); float32 and float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def class_centres(features: torch.Tensor, labels: torch.Tensor):
    """
    Returns ``(classes, inverse, centres, counts)``: the classes present in ``labels`` (sorted),
    the index of each sample's class in ``classes``, the mean feature ``mu_k`` of each class, and
    how many samples each has. Centres are float32 for half-precision features (float64 stays).
    """
    features = _at_least_float32(features)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    centres = features.new_zeros((classes.numel(), features.shape[1]))
    centres.index_add_(0, inverse, features)
    centres = centres / counts.unsqueeze(1).to(features.dtype)
    return classes, inverse, centres, counts


def intra_class_loss(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    Eq. 7, intra-class distance: for each class with at least 2 samples, the mean cosine distance
    ``1 - cos(z_i, mu_k)`` of its samples to its centre; averaged over those classes.
    Returns 0 (connected to ``features``) when no class has 2 samples.
    """
    features = _at_least_float32(features)
    zero = (features * 0.0).sum()  # 0 connected to features (a sum times 0 is NaN on overflow)
    if labels.numel() < 2:
        return zero
    classes, inverse, centres, counts = class_centres(features, labels)
    valid = counts >= 2
    if not valid.any():
        return zero
    dist = 1.0 - F.cosine_similarity(features, centres[inverse], dim=1)  # (n,)
    per_class = features.new_zeros(classes.numel()).index_add_(0, inverse, dist)
    per_class = per_class / counts.to(features.dtype)
    return per_class[valid].mean() + zero


def inter_class_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 1.0,
) -> torch.Tensor:
    """
    Eq. 8, inter-class distance: hinge ``max(0, m - (1 - cos(mu_j, mu_k)))``, the plain mean over
    the ``c (c - 1)`` ordered pairs ``j != k`` of classes present in the batch (the released
    code's form; the paper's text weights the pairs, see docs/design.md).
    Returns 0 (connected to ``features``) with fewer than 2 classes.
    """
    features = _at_least_float32(features)
    zero = (features * 0.0).sum()
    if labels.numel() == 0:
        return zero
    classes, _, centres, _ = class_centres(features, labels)
    c = classes.numel()
    if c < 2:
        return zero
    normed = F.normalize(centres, dim=1)
    cos = normed @ normed.t()
    hinge = (margin - (1.0 - cos)).clamp(min=0)
    off_diag = ~torch.eye(c, dtype=torch.bool, device=features.device)
    return hinge[off_diag].mean() + zero


def balance_factor(
    correct_unbalanced: float,
    correct_balanced: float,
    total: float,
    gamma: float,
) -> float:
    """
    Eq. 6, the self-adaptive balance factor ``alpha = max(0, acc_u - acc_b) ** gamma``.

    Accuracies are fractions ``correct / total`` over the window (the released code uses percent,
    see docs/design.md). Returns 0.0 when ``total`` is 0.
    """
    if total <= 0:
        return 0.0
    gap = (correct_unbalanced - correct_balanced) / total
    return max(0.0, gap) ** gamma
