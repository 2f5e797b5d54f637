"""
Under two gloo workers: every worker computes the same alpha (the window's counts are summed over
workers), while the class centres of Eq. 7-8 are each worker's own (docs/design.md, "Eq. 7-8 in
the detector").
"""
import math

import pytest
import torch
from conftest import make_proposals, run_gloo_workers

from detectron2.utils.events import EventStorage

from projects_lda.modeling.balance import AccuracyWindow
from projects_lda.modeling.lda_loss import inter_class_loss, intra_class_loss

# per rank, per mini-batch: (correct_unbalanced, correct_balanced, total)
LOCAL = {
    0: [(8, 2, 10), (0, 0, 0)],  # the second batch of rank 0 has no foreground
    1: [(1, 1, 2), (5, 1, 6)],
}


def _worker(rank):
    win = AccuracyWindow(window=4, gamma=1.5)
    for counts in LOCAL[rank]:
        win.update(*counts)
    return win.counts.tolist(), float(win.alpha()), win.accuracies()


@pytest.mark.timeout(400)
def test_two_gloo_workers_share_the_window_and_alpha():
    results = run_gloo_workers(_worker)
    # summed counts: batch 1 = (9, 3, 12), batch 2 = (5, 1, 6) -> acc_u = 14/18, acc_b = 4/18
    expected_alpha = (10 / 18) ** 1.5
    for rank in (0, 1):
        counts, alpha, (acc_u, acc_b) = results[rank]
        assert counts[:2] == [[9.0, 3.0, 12.0], [5.0, 1.0, 6.0]]
        assert alpha == pytest.approx(expected_alpha)
        assert (acc_u, acc_b) == pytest.approx((14 / 18, 4 / 18))
    # each worker alone (one process, nothing to sum) has only its own counts and its own alpha:
    # rank 0 (8, 2, 10) -> gap 0.6; rank 1 (6, 2, 8) -> gap 0.5. The workers above use neither.
    local = {}
    for rank in (0, 1):
        win = AccuracyWindow(window=4, gamma=1.5)
        for counts in LOCAL[rank]:
            win.update(*counts)
        local[rank] = float(win.alpha())
    assert local[0] == pytest.approx(0.6**1.5) and local[1] == pytest.approx(0.5**1.5)
    for rank in (0, 1):
        assert results[rank][1] != pytest.approx(local[rank], rel=1e-3)
        assert results[rank][1] != pytest.approx((local[0] + local[1]) / 2, rel=1e-3)


# per rank: the projected features (2-d) of its foreground proposals and their classes
CENTRE_ROWS = {
    0: ([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [0, 0, 1]),
    1: ([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], [1, 1, 2]),
}


def _centres_worker(rank):
    from test_lda_predictor import make_predictor, set_constant

    predictor = make_predictor(fixed_alpha=1.0, divergence_weight=1.0, proj_dim=2)
    set_constant(predictor)
    with torch.no_grad():
        predictor.projection.weight.copy_(torch.eye(2, 8))
        predictor.projection.bias.zero_()
    z, labels = CENTRE_ROWS[rank]
    x = torch.zeros(len(labels), 8)
    x[:, :2] = torch.tensor(z)
    with EventStorage():
        losses = predictor.losses(predictor(x), make_proposals(labels))
    return losses["loss_intra"].item(), losses["loss_inter"].item()


@pytest.mark.timeout(400)
def test_class_centres_are_each_workers_own():
    results = run_gloo_workers(_centres_worker)
    r = 1 / math.sqrt(2)
    # rank 0: class 0's centre (0.5, 0.5) lies 1 - 1/sqrt(2) from both its rows (class 1 has one
    # row: no intra term); centres (0.5, 0.5) and (1, 0): hinge 1 - (1 - cos) = 1/sqrt(2)
    assert results[0] == pytest.approx((1 - r, r), rel=1e-6)
    # rank 1: class 1's rows lie on its centre; centres (0, 1) and (1, 0) are orthogonal
    assert results[1] == pytest.approx((0.0, 0.0), abs=1e-7)
    # centres over the six rows together (class 1's would be (1/3, 2/3), away from its three
    # rows) would give other values on both ranks
    z = torch.tensor(CENTRE_ROWS[0][0] + CENTRE_ROWS[1][0])
    labels = torch.tensor(CENTRE_ROWS[0][1] + CENTRE_ROWS[1][1])
    pooled = (intra_class_loss(z, labels, 3).item(), inter_class_loss(z, labels, 1.0, 3).item())
    for rank in (0, 1):
        assert results[rank][0] != pytest.approx(pooled[0], abs=1e-3)
        assert results[rank][1] != pytest.approx(pooled[1], abs=1e-3)
