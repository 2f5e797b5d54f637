"""
Training machinery of projects_lda: the trainer and the setup of a run that train_net.py (its
``main``: :mod:`projects_lda.app.train`) and the tools use (:mod:`.defaults`), launching on GPUs
or CPU processes (:mod:`.launcher`), the checked training loop (:mod:`.train_loop`), the
run-state hook of exact resume (:mod:`.hooks`), safe checkpoints (:mod:`.checkpoint`) and the one
place where the supported detectron2 builds differ (:mod:`.compat`). See docs/reliability.md.
"""
from .checkpoint import CheckpointError, SafeCheckpointer
from .hooks import RunStateHook
from .launcher import launch
from .train_loop import CheckedAMPTrainer, CheckedSimpleTrainer, NonFiniteLossError

__all__ = [
    "CheckpointError",
    "SafeCheckpointer",
    "RunStateHook",
    "launch",
    "CheckedAMPTrainer",
    "CheckedSimpleTrainer",
    "NonFiniteLossError",
]
