"""Every worker computes the same alpha: the window's counts are summed over workers (gloo)."""
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from projects_lda.balance_factor import AccuracyWindow

# per rank, per mini-batch: (correct_unbalanced, correct_balanced, total)
LOCAL = {
    0: [(8, 2, 10), (0, 0, 0)],  # the second batch of rank 0 has no foreground
    1: [(1, 1, 2), (5, 1, 6)],
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, queue):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        win = AccuracyWindow(window=4, gamma=1.5)
        for counts in LOCAL[rank]:
            win.update(*counts)
        queue.put((rank, win.counts.tolist(), win.alpha(), win.accuracies()))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_gloo_workers_share_the_window_and_alpha():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, rest) for r, *rest in (queue.get(timeout=100) for _ in procs))
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    # summed counts: batch 1 = (9, 3, 12), batch 2 = (5, 1, 6) -> acc_u = 14/18, acc_b = 4/18
    expected_alpha = (10 / 18) ** 1.5
    for rank in (0, 1):
        counts, alpha, (acc_u, acc_b) = results[rank]
        assert counts[:2] == [[9.0, 3.0, 12.0], [5.0, 1.0, 6.0]]
        assert alpha == pytest.approx(expected_alpha)
        assert (acc_u, acc_b) == pytest.approx((14 / 18, 4 / 18))
    # a ratio-of-means (averaging each worker's own alpha) would differ: the counts are reduced
    local_alphas = [AccuracyWindow(4, 1.5) for _ in range(2)]
    for rank, win in enumerate(local_alphas):
        for counts in LOCAL[rank]:
            win.update(*counts)
    assert sum(w.alpha() for w in local_alphas) / 2 != pytest.approx(expected_alpha)
