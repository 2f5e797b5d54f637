"""
The loss terms of LDA (Long-tailed Distribution Adaptation, ACM MM 2021) as pure functions: the
importance-weighted cross-entropy of Eq. 5 and the divergence terms of Eq. 7-8 (the weights of
Eq. 5 and alpha of Eq. 6: :mod:`projects_lda.modeling.balance`).

Notation (paper, Sec. 3): ``C`` foreground classes, ``n_k`` the training frequency of class k,
``N = sum_k n_k``. Every function here works on plain tensors and can be tested alone; the box
predictor in :mod:`projects_lda.modeling.lda_fast_rcnn` wires them together.

Half precision (float16 / bfloat16 inputs, e.g. under ``SOLVER.AMP.ENABLED``): the losses are
computed in float32 from their inputs (class centres summed with ``index_add_`` overflow float16
at LVIS scale, and cosine similarities lose their epsilon), also inside an autocast region (the
one matrix product, which autocast would run in half precision, runs with autocast off), and
returned in float32; gradients flow back to the half-precision inputs. Only the foreground rows
enter, so the casts are cheap.
"""
from typing import Optional

import torch
from torch.nn import functional as F

__all__ = [
    "weighted_cross_entropy",
    "intra_class_loss",
    "inter_class_loss",
    "class_centres",
]


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
        weights: (C,) per-class weights, e.g. ``beta(k)`` from
            :func:`projects_lda.modeling.balance.importance_weights`.
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


def class_centres(features: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """
    ``(centres, counts)``: the mean feature ``mu_k`` of each class k in ``[0, num_classes)``
    over the samples labelled k, shape (num_classes, D), and how many samples each class has,
    (num_classes,). A class with no sample has count 0 and a zero centre. Fixed shapes, sums
    with ``index_add_`` (no ``unique``, no boolean mask: nothing waits for the device). Centres
    are float32 for half-precision features (float64 stays).
    """
    features = _at_least_float32(features)
    counts = features.new_zeros(num_classes).index_add_(
        0, labels, features.new_ones(labels.numel())
    )
    centres = features.new_zeros((num_classes, features.shape[1])).index_add_(0, labels, features)
    return centres / counts.clamp(min=1).unsqueeze(1), counts


def _num_classes(labels: torch.Tensor, num_classes: Optional[int]) -> int:
    # The predictor passes C; a standalone call may let the labels tell (one host read).
    return num_classes if num_classes is not None else int(labels.max()) + 1


def intra_class_loss(
    features: torch.Tensor, labels: torch.Tensor, num_classes: Optional[int] = None
) -> torch.Tensor:
    """
    Eq. 7, intra-class distance: for each class with at least 2 samples, the mean cosine distance
    ``1 - cos(z_i, mu_k)`` of its samples to its centre; averaged over those classes.
    Returns 0 (connected to ``features``) when no class has 2 samples.

    ``labels`` lie in ``[0, num_classes)`` (None: ``max(labels) + 1``).
    """
    features = _at_least_float32(features)
    zero = (features * 0.0).sum()  # 0 connected to features (a sum times 0 is NaN on overflow)
    if labels.numel() < 2:
        return zero
    num_classes = _num_classes(labels, num_classes)
    centres, counts = class_centres(features, labels, num_classes)
    dist = 1.0 - F.cosine_similarity(features, centres[labels], dim=1)  # (n,)
    per_class = features.new_zeros(num_classes).index_add_(0, labels, dist)
    valid = (counts >= 2).to(features.dtype)
    mean_per_class = per_class / counts.clamp(min=1)
    return (mean_per_class * valid).sum() / valid.sum().clamp(min=1) + zero


def inter_class_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 1.0,
    num_classes: Optional[int] = None,
) -> torch.Tensor:
    """
    Eq. 8, inter-class distance: hinge ``max(0, m - (1 - cos(mu_j, mu_k)))``, the plain mean over
    the ``c (c - 1)`` ordered pairs ``j != k`` of the c classes present in the batch (the
    released code's form; the paper's text weights the pairs, see docs/design.md).
    Returns 0 (connected to ``features``) with fewer than 2 classes.

    ``labels`` lie in ``[0, num_classes)`` (None: ``max(labels) + 1``).
    """
    features = _at_least_float32(features)
    zero = (features * 0.0).sum()
    n = labels.numel()
    if n < 2:
        return zero
    num_classes = _num_classes(labels, num_classes)
    centres, counts = class_centres(features, labels, num_classes)
    # At most k = min(C, n) classes are present: a stable sort puts them first, so the pairs are
    # taken among k centres (k x k, not C x C: 256 against 1,203 on LVIS) with a fixed shape.
    k = min(num_classes, n)
    first = torch.sort((counts == 0).to(torch.uint8), stable=True).indices[:k]
    present = counts[first] > 0
    normed = F.normalize(centres[first], dim=1)
    # autocast would run the product in half precision whatever its inputs' dtype (matmul is on
    # its lower-precision list): the cosines near the margin would be rounded to 1e-3 (float16)
    # or 1e-2 (bfloat16)
    with torch.autocast(device_type=normed.device.type, enabled=False):
        cosines = normed @ normed.t()
    hinge = (margin - (1.0 - cosines)).clamp(min=0)
    pairs = (present[:, None] & present[None, :]).fill_diagonal_(False).to(hinge.dtype)
    return (hinge * pairs).sum() / pairs.sum().clamp(min=1) + zero
