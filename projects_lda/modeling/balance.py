"""
How LDA balances its classifiers (paper, Sec. 3; notation of :mod:`.lda_loss`): the importance
weights of Eq. 5, the self-adaptive balance factor alpha of Eq. 6, the sliding window of training
accuracies it is computed over, and the alpha of Eq. 9 (fixed, or Eq. 6 over the window).
"""
from typing import Union

import torch
from torch import nn

from .class_freq_buffer import validate_class_freq
from .common import all_reduce_sum

__all__ = ["importance_weights", "balance_factor", "AccuracyWindow", "current_alpha"]


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


def balance_factor(
    correct_unbalanced: torch.Tensor,
    correct_balanced: torch.Tensor,
    total: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """
    Eq. 6, the self-adaptive balance factor ``alpha = max(0, acc_u - acc_b) ** gamma``, as a
    tensor on the counts' device (no host read).

    Accuracies are fractions ``correct / total`` over the window (the released code uses percent,
    see docs/design.md). Returns 0 when ``total`` is 0.
    """
    total = torch.as_tensor(total, dtype=torch.float64)
    gap = (torch.as_tensor(correct_unbalanced, dtype=torch.float64).to(total.device)
           - torch.as_tensor(correct_balanced, dtype=torch.float64).to(total.device))
    alpha = (gap.clamp(min=0) / torch.where(total > 0, total, torch.ones_like(total))) ** gamma
    return torch.where(total > 0, alpha, torch.zeros_like(alpha))



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
        """(3,) float64 on the device: correct_unbalanced, correct_balanced, total over the
        window."""
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


def current_alpha(window: AccuracyWindow, fixed_alpha: float) -> Union[float, torch.Tensor]:
    """
    alpha of Eq. 9: ``fixed_alpha`` when >= 0 (MODEL.LDA.FIXED_ALPHA, the ablation), else Eq. 6
    over ``window`` (a 0-dim tensor on the device).
    """
    if fixed_alpha >= 0:
        return float(fixed_alpha)
    return window.alpha()
