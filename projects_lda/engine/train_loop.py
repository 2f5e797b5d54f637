"""
detectron2's ``SimpleTrainer`` / ``AMPTrainer`` with a non-finite loss check that names the
term, the iteration and the worker.

detectron2 checks the *sum* of the losses on the main worker only, and its message lists every
term without saying which one broke. The checked trainers gather the loss terms of all workers at
every iteration; when one is NaN or infinite they raise :class:`NonFiniteLossError` on every
worker (so none waits forever for the others), before the optimizer step: the weights never take
a NaN update and no checkpoint is written for that iteration. The metrics themselves are written
by detectron2's ``SimpleTrainer._write_metrics`` (with main's ``gather_metric_period``), followed
by the data-health counts of :class:`~projects_lda.data.loader.ReproducibleTrainLoader`
(``data/*``, summed over workers).
"""
import math
from collections import Counter

from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..data.loader import DATA_COUNTERS, ReproducibleTrainLoader
from . import compat

__all__ = ["NonFiniteLossError", "CheckedSimpleTrainer", "CheckedAMPTrainer"]


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the iteration, term(s), worker(s)."""


def check_finite(gathered_losses, iteration: int, prefix: str = "") -> None:
    """
    Raises :class:`NonFiniteLossError` if a loss term (or the total) of any worker is not
    finite. ``gathered_losses[rank]`` is worker ``rank``'s ``{name: float}``.
    """
    world = len(gathered_losses)
    bad = [(k, v, r) for r, g in enumerate(gathered_losses) for k, v in g.items()
           if not math.isfinite(v)]
    if not bad:
        totals = [sum(g.values()) for g in gathered_losses]
        bad = [(f"{prefix}total_loss", t, r) for r, t in enumerate(totals) if not math.isfinite(t)]
    if bad:
        terms = sorted({k for k, _, _ in bad})
        where = ", ".join(f"{k}={v}" + (f" on worker {r}" if world > 1 else "") for k, v, r in bad)
        raise NonFiniteLossError(
            f"Loss became non-finite at iteration {iteration}: {', '.join(terms)} "
            f"({where}). The optimizer step of this iteration was not taken and no checkpoint "
            f"was written for it. Losses of worker 0: "
            + ", ".join(f"{k}={v:.4g}" for k, v in gathered_losses[0].items())
        )


class _CheckedMetrics:
    """Mixin for ``SimpleTrainer`` and its subclasses (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if getattr(self, "async_write_metrics", False):
            # detectron2 main would run _write_metrics in a thread: the check would come after
            # the optimizer step and its error would be lost in the executor
            raise ValueError(
                f"{type(self).__name__}: async_write_metrics is not supported (the non-finite "
                "loss check must run before the optimizer step)"
            )

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        iteration = self.iter if iter is None else iter
        losses = {k: float(v.detach().cpu().item()) for k, v in loss_dict.items()}
        counts = dict(getattr(self.data_loader, "counters", None) or {})
        gathered = comm.all_gather({"losses": losses, "counts": counts})
        check_finite([g["losses"] for g in gathered], iteration, prefix)

        if compat.WRITE_METRICS_TAKES_ITER:
            super()._write_metrics(loss_dict, data_time, prefix, iter=iter)
        else:
            super()._write_metrics(loss_dict, data_time, prefix)

        period = getattr(self, "gather_metric_period", 1)
        if (
            comm.is_main_process()
            and (iteration + 1) % period == 0
            and isinstance(self.data_loader, ReproducibleTrainLoader)
        ):
            total = Counter(self.data_loader.counter_offset)
            for g in gathered:
                total.update(g["counts"])
            get_event_storage().put_scalars(
                smoothing_hint=False, **{f"data/{k}": float(total[k]) for k in DATA_COUNTERS}
            )


class CheckedSimpleTrainer(_CheckedMetrics, SimpleTrainer):
    """``SimpleTrainer`` whose metrics check names non-finite loss terms (see the module doc)."""


class CheckedAMPTrainer(_CheckedMetrics, AMPTrainer):
    """``AMPTrainer`` whose metrics check names non-finite loss terms (see the module doc)."""
