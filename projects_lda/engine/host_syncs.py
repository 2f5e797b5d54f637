"""
Counting the operations of a training step that make the host wait for the device.

On a GPU, an op whose result decides a shape or a Python value (a scalar read, boolean-mask
indexing, ``nonzero``, ``unique``) blocks the host until the stream has caught up. The same ops
exist on the CPU, so :func:`count_host_syncs` counts them under ``torch.profiler`` on any
machine: the test suite checks a predictor's count in CI, without a GPU, and
``tools/measure.py syncs`` prints the counts of every method at LVIS's shape.
"""
from collections import Counter
from typing import Callable, Tuple

import torch

__all__ = ["SYNC_OPS", "count_host_syncs", "predictor_step"]

# aten::item and aten::is_nonzero go through _local_scalar_dense, counted once there.
SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2")


def count_host_syncs(fn: Callable, *args, **kwargs) -> Tuple[object, Counter]:
    """``(fn(*args, **kwargs), Counter of the SYNC_OPS it ran)``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = fn(*args, **kwargs)
    counts = Counter(e.name for e in prof.events() if e.name in SYNC_OPS)
    return out, counts


def predictor_step(predictor, features: torch.Tensor, proposals) -> None:
    """One training step of a box predictor: forward, losses, backward (the gradients kept)."""
    losses = predictor.losses(predictor(features), proposals)
    sum(losses.values()).backward()
