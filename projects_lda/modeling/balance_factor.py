"""
Sliding-window training accuracies of the unbalanced and balanced classifiers, and the
self-adaptive balance factor alpha of Eq. 6 computed from them.
"""
import torch
from torch import nn

from .common import all_reduce_sum
from .lda_loss import balance_factor

__all__ = ["AccuracyWindow"]


class AccuracyWindow(nn.Module):
    """
    Keeps the (correct_unbalanced, correct_balanced, total) counts of the last ``window``
    mini-batches in buffers, so they are saved in checkpoints and survive ``--resume``.

    Counts are summed over all workers before they enter the window, so every worker holds the
    same window and computes the same alpha (reducing the counts, not the ratios).
    """

    def __init__(self, window: int, gamma: float):
        super().__init__()
        if window < 1:
            raise ValueError(f"MODEL.LDA.WINDOW must be >= 1, got {window}")
        self.gamma = gamma
        # counts[i] = (correct_unbalanced, correct_balanced, total) of one mini-batch
        self.register_buffer("counts", torch.zeros(window, 3, dtype=torch.float64))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))

    @property
    def window(self) -> int:
        return self.counts.shape[0]

    @torch.no_grad()
    def update(self, correct_unbalanced, correct_balanced, total) -> None:
        """
        Adds one mini-batch (the local counts of this worker, numbers or 0-dim tensors) to the
        window. With tensors on the window's device nothing waits for the device: the slot is
        chosen by a tensor index.
        """
        local = torch.stack(
            [
                torch.as_tensor(v, dtype=torch.float64, device=self.counts.device)
                for v in (correct_unbalanced, correct_balanced, total)
            ]
        )
        # gloo and NCCL both reduce float64 on the device the counts live on
        slot = (self.position % self.window).reshape(1)
        self.counts.index_copy_(0, slot, all_reduce_sum(local).reshape(1, 3))
        self.position += 1

    def totals(self) -> torch.Tensor:
        """(3,) float64 on the device: correct_unbalanced, correct_balanced, total over the window."""
        return self.counts.sum(dim=0)

    def accuracies(self):
        """(acc_unbalanced, acc_balanced) over the window as python fractions; (0, 0) when empty.
        Reads the device: for reports, not for the training step."""
        cu, cb, total = self.totals().tolist()
        if total <= 0:
            return 0.0, 0.0
        return cu / total, cb / total

    def alpha(self) -> torch.Tensor:
        """Eq. 6 over the window: a 0-dim float64 tensor on the device, without gradient."""
        cu, cb, total = self.totals()
        return balance_factor(cu, cb, total, self.gamma)
