"""
:class:`RunStateHook`: what makes a resumed run continue exactly as an uninterrupted one, besides
the model, optimizer and LR schedule that detectron2's checkpoint already holds.

* before every step it reseeds torch / numpy / random from (seed, rank, iteration): RPN anchor
  and ROI proposal sampling draw from torch's global RNG, which detectron2 does not save;
* before training it starts the :class:`~projects_lda.data.loader.ReproducibleTrainLoader` at the
  resume iteration, with the seed of the checkpoint;
* it saves in the checkpoint the seed, the data counts and the last 20 values of every metric,
  restored on resume so that the smoothed values of ``metrics.json`` (medians over 20
  iterations) continue exactly (tests/test_reliability.py shows what differs without them).
"""
import logging
from collections import Counter

from detectron2.engine import hooks
from detectron2.utils import comm

from ..data.loader import ReproducibleTrainLoader, derive_seed, seed_everything

__all__ = ["RunStateHook"]

logger = logging.getLogger(__name__)

_STEP = 0x57E9  # mixed into the per-iteration seeds (see projects_lda.data.loader)


class RunStateHook(hooks.HookBase):
    """
    Makes a run resumable exactly (see the module docstring): reseeds the RNGs from
    (seed, rank, iteration) before every step, starts the data loader at the resume iteration,
    and saves (in the trainer's checkpoint) the seed, the data counters and the last
    ``history`` values of every metric, which are restored when the run resumes.
    """

    def __init__(self, seed: int, data_loader=None, history: int = 20):
        self.seed = int(seed)
        self.data_loader = data_loader
        self.history = history
        self._pending = None

    def before_train(self):
        loader = self.data_loader
        if isinstance(loader, ReproducibleTrainLoader):
            loader.set_start(self.trainer.iter, seed=self.seed)
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if isinstance(loader, ReproducibleTrainLoader):
            loader.counter_offset = Counter(state.get("data_counters", {}))
        storage = self.trainer.storage
        hints = state.get("smoothing_hints", {})
        for name, values in state.get("history", {}).items():
            # EventStorage has no public way to add past values without also making them the
            # "latest" ones, which its JSONWriter would write again
            buf = storage._history[name]
            for value, iteration in values:
                buf.update(float(value), int(iteration))
            storage._smoothing_hints[name] = bool(hints.get(name, True))

    def before_step(self):
        seed_everything(derive_seed(self.seed, _STEP, comm.get_rank(), self.trainer.iter))

    def state_dict(self):
        state = {"seed": self.seed}
        storage = getattr(self.trainer, "storage", None)
        if storage is not None:
            hints = storage.smoothing_hints()
            state["history"] = {
                name: [[float(v), int(i)] for v, i in buf.values()[-self.history :]]
                for name, buf in storage.histories().items()
            }
            state["smoothing_hints"] = {k: bool(v) for k, v in hints.items()}
            state["data_counters"] = {
                name[len("data/") :]: float(buf.latest())
                for name, buf in storage.histories().items()
                if name.startswith("data/")
            }
        return state

    def load_state_dict(self, state):
        seed = int(state.get("seed", self.seed))
        if seed != self.seed:
            logger.info("Resuming with the seed of the checkpoint, %d (not %d)", seed, self.seed)
        self.seed = seed
        self._pending = state
