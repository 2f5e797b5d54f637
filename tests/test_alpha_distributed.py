"""Every worker computes the same alpha: the window's counts are summed over workers (gloo)."""
import pytest
from conftest import run_gloo_workers

from projects_lda.modeling.balance_factor import AccuracyWindow

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
