"""
Counting the operations of a training step that make the host wait for the device.

On a GPU, an op whose result decides a shape or a Python value (a scalar read, boolean-mask
indexing, ``nonzero``, ``unique``) blocks the host until the stream has caught up. The same ops
exist on the CPU, so :func:`count_host_syncs` counts them under ``torch.profiler`` on any
machine: the test suite checks a predictor's count in CI, without a GPU, and
``tools/measure.py syncs`` prints the counts of every method at LVIS's shape.

:func:`profile_step` adds what a step asks of the host and of the device: the operators the host
dispatches (each costs some microseconds of Python and dispatcher time, whatever its size) and,
on a GPU, the kernels launched and their summed time. A step whose device time is far below its
wall time is bound by the host's dispatching.
"""
from collections import Counter
from typing import Callable, Tuple

import torch

__all__ = ["SYNC_OPS", "count_host_syncs", "predictor_step", "profile_step"]

# aten::item and aten::is_nonzero go through _local_scalar_dense, counted once there.
SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::_unique2")


def count_host_syncs(fn: Callable, *args, **kwargs) -> Tuple[object, Counter]:
    """``(fn(*args, **kwargs), Counter of the SYNC_OPS it ran)``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out = fn(*args, **kwargs)
    return out, _sync_counts(prof.events())


def _sync_counts(events) -> Counter:
    return Counter(e.name for e in events if e.name in SYNC_OPS)


def profile_step(fn: Callable, *args, top: int = 0, **kwargs) -> dict:
    """
    One call of ``fn(*args, **kwargs)`` under torch.profiler: ``{"syncs": Counter of SYNC_OPS,
    "ops": operators dispatched by the host (aten calls not nested in another aten call, the
    backward's included), "kernels": device kernels and copies launched, "device_ms": their
    summed time (0 on the CPU), "top": [(name, calls)] of the ``top`` most-dispatched operators}``.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    events = prof.events()
    dispatched = [e.name for e in events if e.name.startswith("aten::")
                  and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
    device = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    return {
        "syncs": _sync_counts(events),
        "ops": len(dispatched),
        "kernels": len(device),
        "device_ms": sum(e.time_range.elapsed_us() for e in device) / 1000.0,
        "top": Counter(dispatched).most_common(top),
    }


def predictor_step(predictor, features: torch.Tensor, proposals) -> None:
    """One training step of a box predictor: forward, losses, backward (the gradients kept)."""
    losses = predictor.losses(predictor(features), proposals)
    sum(losses.values()).backward()
