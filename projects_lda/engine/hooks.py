"""
Hooks of ``train_net.Trainer``: :class:`RunStateHook` (exact resume) and
:class:`PruningPeriodicCheckpointer` (periodic checkpoints, keeping only the newest few).

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
import os
from collections import Counter

from detectron2.engine import hooks
from detectron2.utils import comm

from ..data.loader import ReproducibleTrainLoader, derive_seed, seed_everything

__all__ = ["PruningPeriodicCheckpointer", "RunStateHook"]

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


class PruningPeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """
    detectron2's ``PeriodicCheckpointer`` hook (``model_NNNNNNN.pth`` every ``period``
    iterations, ``model_final.pth`` after the last) whose ``max_to_keep`` removes only files this
    run created. After writing a periodic checkpoint it deletes the oldest of those it created
    beyond the newest ``max_to_keep``, with a log line naming the file. Never deleted:

    * ``model_final.pth``;
    * any checkpoint file that was in the folder when training started: the earlier run's
      checkpoints, which it may have been told to keep (by ``max_to_keep=None``), even when this
      run writes a file of the same name again (fvcore's hook deletes such a file too);
    * the newest ``max_to_keep``: a file is deleted only after its successor is completely
      written (``SafeCheckpointer`` writes atomically), so with ``max_to_keep >= 2``
      ``--resume`` keeps an older checkpoint to fall back on when the newest is damaged.

    ``max_to_keep=None`` keeps every checkpoint, as detectron2 does.
    """

    def __init__(self, checkpointer, period, max_iter=None, max_to_keep=None, file_prefix="model"):
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ValueError(
                f"max_to_keep must be None (keep every checkpoint) or a count >= 1, "
                f"got {max_to_keep!r}"
            )
        super().__init__(checkpointer, period, max_iter, max_to_keep, file_prefix)
        self._present_at_start = set()

    @classmethod
    def from_config(cls, cfg, checkpointer):
        """The hook for ``SOLVER.CHECKPOINT_PERIOD`` and ``SOLVER.CHECKPOINT_MAX_TO_KEEP``."""
        keep = cfg.SOLVER.CHECKPOINT_MAX_TO_KEEP
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(
                "SOLVER.CHECKPOINT_MAX_TO_KEEP must be 0 (keep every periodic checkpoint) or the "
                f"number of periodic checkpoints to keep, got {keep!r}"
            )
        return cls(checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_to_keep=keep or None)

    def before_train(self):
        super().before_train()
        save_dir = self.checkpointer.save_dir
        present = []
        if save_dir and self.path_manager.exists(save_dir):
            present = self.checkpointer.get_all_checkpoint_files()
        self._present_at_start = {os.path.basename(f) for f in present}
        self.recent_checkpoints = []

    def step(self, iteration: int, **kwargs) -> None:
        # fvcore's step() with the deletion of _prune(); the names are fvcore's
        iteration = int(iteration)
        additional_state = {"iteration": iteration, **kwargs}
        if (iteration + 1) % self.period == 0:
            name = "{}_{:07d}".format(self.file_prefix, iteration)
            self.checkpointer.save(name, **additional_state)
            if self.max_to_keep is not None:
                self._prune(name + ".pth")
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", **additional_state)

    def _prune(self, written: str) -> None:
        """Deletes the oldest periodic checkpoints this run created beyond ``max_to_keep``."""
        if written in self._present_at_start:
            return  # in the folder before the run: never deleted, so not counted either
        self.recent_checkpoints.append(written)
        while len(self.recent_checkpoints) > self.max_to_keep:
            path = os.path.join(self.checkpointer.save_dir, self.recent_checkpoints.pop(0))
            if self.path_manager.exists(path):
                self.path_manager.rm(path)
                logger.info(
                    "Deleted %s: only the newest %d periodic checkpoints of this run are kept "
                    "(SOLVER.CHECKPOINT_MAX_TO_KEEP; 0 keeps them all)",
                    path,
                    self.max_to_keep,
                )
