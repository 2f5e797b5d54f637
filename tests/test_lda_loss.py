"""Each LDA loss term on tiny hand-made inputs, against values computed by hand."""
import math

import pytest
import torch

from projects_lda.modeling.balance import AccuracyWindow, balance_factor, importance_weights
from projects_lda.modeling.lda_loss import (
    weighted_cross_entropy,
    inter_class_loss,
    intra_class_loss,
)


def test_importance_weights_by_hand():
    # n = [6, 3, 1, 0]: N = 10, C' = 3 classes with samples; beta(k) = N / (C' n_k)
    w = importance_weights(torch.tensor([6.0, 3.0, 1.0, 0.0]))
    expected = [10 / 18, 10 / 9, 10 / 3, 0.0]
    assert torch.allclose(w, torch.tensor(expected), atol=1e-6)
    assert torch.isfinite(w).all()


def test_importance_weights_bad_input():
    with pytest.raises(ValueError, match="all zero"):
        importance_weights(torch.zeros(3))
    with pytest.raises(ValueError, match="finite and >= 0"):
        importance_weights(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        importance_weights(torch.tensor([1.0, float("nan")]))


def test_weighted_cross_entropy_by_hand():
    # sample 0: uniform logits, label 0 -> CE = ln 3; sample 1: p(label 1) = 2/4 -> CE = ln 2
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(2.0), 0.0]])
    labels = torch.tensor([0, 1])
    weights = torch.tensor([0.5, 2.0, 1.0])
    total = 0.5 * math.log(3.0) + 2.0 * math.log(2.0)
    assert weighted_cross_entropy(logits, labels, weights).item() == pytest.approx(total / 2)
    assert weighted_cross_entropy(logits, labels, weights, 1.0).item() == pytest.approx(total)
    assert weighted_cross_entropy(logits, labels, weights, 8).item() == pytest.approx(total / 8)
    with pytest.raises(ValueError, match="normalizer"):
        weighted_cross_entropy(logits, labels, weights, 0)


def test_weighted_cross_entropy_empty_is_zero_with_gradient():
    logits = torch.zeros((0, 3), requires_grad=True)
    loss = weighted_cross_entropy(logits, torch.zeros(0, dtype=torch.long), torch.ones(3))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_intra_class_loss_by_hand():
    # class 0: (1,0),(0,1): centre (.5,.5), each 1 - cos = 1 - 1/sqrt(2)
    # class 1: one sample -> not counted
    # class 2: (1,0),(1,0),(-1,0): centre (1/3, 0): distances 0, 0, 2 -> mean 2/3
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    expected = ((1 - 1 / math.sqrt(2)) + 2 / 3) / 2
    assert intra_class_loss(z, y).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "z,y",
    [
        (torch.tensor([[1.0, 2.0]]), torch.tensor([3])),  # one sample
        (torch.tensor([[1.0, 2.0], [3.0, 1.0]]), torch.tensor([0, 1])),  # one sample per class
        (torch.zeros((0, 2)), torch.zeros(0, dtype=torch.long)),  # no foreground
    ],
)
def test_intra_class_loss_degenerate_is_zero(z, y):
    z = z.clone().requires_grad_(True)
    loss = intra_class_loss(z, y)
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def _three_class_features():
    # class 0: (1,1),(1,-1) -> centre (1,0); class 1: (0,2) -> (0,1) dir; class 2: (-3,0)
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.0, 2.0], [-3.0, 0.0]])
    y = torch.tensor([0, 0, 1, 2])
    return z, y


def test_inter_class_loss_by_hand():
    # cosine distances: d01 = 1, d02 = 2, d12 = 1; margin 1.2 -> hinge 0.2, 0, 0.2 (each twice)
    z, y = _three_class_features()
    loss = inter_class_loss(z, y, margin=1.2)
    assert loss.item() == pytest.approx(4 * 0.2 / 6, abs=1e-6)
    # margin 1: every pair is at least 1 apart -> 0
    assert inter_class_loss(z, y, margin=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_inter_class_loss_one_class_or_empty_is_zero():
    z = torch.tensor([[1.0, 0.0], [2.0, 1.0]], requires_grad=True)
    loss = inter_class_loss(z, torch.tensor([4, 4]))
    assert loss.item() == 0.0
    loss.backward()
    assert z.grad is not None
    empty = inter_class_loss(torch.zeros((0, 2)), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


def test_balance_factor_by_hand():
    # acc_u = 0.8, acc_b = 0.5: alpha = 0.3 ** 1.5 (accuracies as fractions)
    assert balance_factor(8, 5, 10, 1.5) == pytest.approx(0.3**1.5)
    assert balance_factor(5, 8, 10, 1.5) == 0.0  # clamped at zero
    assert balance_factor(0, 0, 0, 1.5) == 0.0  # empty window


def test_accuracy_window_slides():
    win = AccuracyWindow(window=2, gamma=1.5)
    assert win.alpha() == 0.0 and win.accuracies() == (0.0, 0.0)
    win.update(5, 3, 10)
    assert win.alpha() == pytest.approx(0.2**1.5)
    win.update(6, 6, 10)
    win.update(9, 1, 10)  # the first batch leaves the window: (6+9, 6+1) of 20
    assert win.accuracies() == pytest.approx((15 / 20, 7 / 20))
    assert win.alpha() == pytest.approx(0.4**1.5)
    win.update(0, 0, 0)  # a batch without foreground keeps the other counts
    assert win.accuracies() == pytest.approx((9 / 10, 1 / 10))


def test_accuracy_window_state_dict_round_trip():
    a = AccuracyWindow(window=3, gamma=2.0)
    for counts in [(3, 1, 4), (2, 2, 4), (4, 0, 4), (1, 1, 4)]:
        a.update(*counts)
    b = AccuracyWindow(window=3, gamma=2.0)
    b.load_state_dict(a.state_dict())
    assert b.alpha() == pytest.approx(a.alpha())
    assert int(b.position) == 4
    b.update(0, 4, 4)  # overwrites the oldest entry in both the same way
    a.update(0, 4, 4)
    assert torch.equal(a.counts, b.counts)


def test_accuracy_window_rejects_bad_window():
    with pytest.raises(ValueError, match="MODEL.LDA.WINDOW"):
        AccuracyWindow(window=0, gamma=1.5)
