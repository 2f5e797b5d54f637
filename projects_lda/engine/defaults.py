"""
The project's trainer and the setup of a run from command-line arguments, as ``train_net.py``
runs them (its ``main``: :mod:`projects_lda.app.train`) and as the tools (benchmark, LVIS
rehearsals, the demo) build models, loaders and configs.
"""
import logging
import os
import weakref

import torch

import detectron2.utils.comm as comm
from detectron2.data import build_detection_test_loader
from detectron2.engine import DefaultTrainer, TrainerBase, create_ddp_model, default_setup, hooks
from detectron2.utils.logger import setup_logger

from ..config import get_project_cfg
from ..data.class_names import CHECKPOINT_KEY, training_class_names
from ..data.loader import ReproducibleTrainLoader, build_reproducible_train_loader
from ..data.mapper import SafeDatasetMapper
from ..evaluation import build_evaluator
from .checkpoint import SafeCheckpointer
from .compat import split_weights_query
from .hooks import PruningPeriodicCheckpointer, RunStateHook
from .train_loop import CheckedAMPTrainer, CheckedSimpleTrainer

__all__ = ["Trainer", "check_weights", "load_config", "setup"]

logger = logging.getLogger("projects_lda")


class Trainer(DefaultTrainer):
    """
    DefaultTrainer with LVIS evaluation, the reproducible training loader, a data mapper that
    names unreadable images, a training loop that names non-finite loss terms, safe atomic
    checkpoints, exact resume (:class:`~projects_lda.engine.RunStateHook`) and DDP on the CPU.
    """

    def __init__(self, cfg):
        # DefaultTrainer.__init__, step by step, with the checked trainer, the safe checkpointer
        # and a DDP wrapper that also works on the CPU (detectron2 gives DDP CUDA device_ids)
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        on_cuda = next(model.parameters()).device.type == "cuda"
        model = create_ddp_model(
            model,
            broadcast_buffers=False,
            device_ids=[comm.get_local_rank()] if on_cuda else None,
        )
        checked = CheckedAMPTrainer if cfg.SOLVER.AMP.ENABLED else CheckedSimpleTrainer
        self._trainer = checked(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        # the training set's class names travel in every checkpoint (projects_lda.deploy reads
        # them), so that the model runs where its dataset is not registered
        names = training_class_names(cfg)
        extra = {CHECKPOINT_KEY: names} if names is not None else {}
        self.checkpointer = SafeCheckpointer(
            model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self), **extra
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        loader = self._trainer.data_loader
        if isinstance(loader, ReproducibleTrainLoader):
            seed = loader.seed
        else:
            seed = self.cfg.SEED if self.cfg.SEED >= 0 else comm.shared_random_seed()
        # detectron2's checkpoint hook keeps every periodic checkpoint; this one keeps the newest
        # SOLVER.CHECKPOINT_MAX_TO_KEEP of them (0: all), never model_final.pth or a file that
        # was there before the run
        ret = [
            PruningPeriodicCheckpointer.from_config(self.cfg, self.checkpointer)
            if isinstance(h, hooks.PeriodicCheckpointer)
            else h
            for h in super().build_hooks()
        ]
        return ret + [RunStateHook(seed, loader)]

    # The optimizer travels under "_trainer" (detectron2 0.6's DefaultTrainer does not save it:
    # a resumed run restarted SGD momentum from zero). Loaded through TrainerBase, since main's
    # DefaultTrainer.load_state_dict fails on checkpoints without "_trainer" (0.6's) and would
    # load the optimizer a second time.
    def state_dict(self):
        ret = TrainerBase.state_dict(self)
        ret["_trainer"] = self._trainer.state_dict()
        return ret

    def load_state_dict(self, state_dict):
        TrainerBase.load_state_dict(self, state_dict)
        if "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logger.warning(
                "The checkpoint holds no optimizer state (written by detectron2 0.6's "
                "DefaultTrainer): SGD momentum restarts from zero"
            )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_reproducible_train_loader(cfg, mapper=SafeDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=SafeDatasetMapper(cfg, is_train=False)
        )


def check_weights(cfg):
    """Raises FileNotFoundError when MODEL.WEIGHTS names a missing local file (detectron2
    silently trains from scratch then)."""
    weights, _ = split_weights_query(cfg.MODEL.WEIGHTS)  # "w.pth?matching_heuristics=True"
    if weights and "://" not in weights and not os.path.isfile(weights):
        hint = ""
        if "?" in weights:
            hint = " (this detectron2 build reads no '?query' after a weights path; main does)"
        raise FileNotFoundError(f"MODEL.WEIGHTS: file not found: {weights}{hint}")


def load_config(config_file, opts):
    """
    The project config of ``config_file`` with the command-line ``opts`` (``KEY VALUE ...``)
    merged, not frozen, on the CPU when CUDA is not available. Errors name the file or the
    option; a ``MODEL.WEIGHTS`` naming a missing file is an error (:func:`check_weights`).
    """
    cfg = get_project_cfg()
    # yacs names the bad key but not where it came from
    try:
        cfg.merge_from_file(config_file)
    except KeyError as e:  # "Non-existent config key: X"
        raise KeyError(f"{config_file}: {e.args[0] if e.args else e}") from None
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:  # "Non-existent key: X"
        raise KeyError(f"command-line options: {e.args[0] if e.args else e}") from None
    if not torch.cuda.is_available() and cfg.MODEL.DEVICE != "cpu":
        cfg.MODEL.DEVICE = "cpu"
    check_weights(cfg)
    return cfg


def setup(args):
    """
    The frozen project config of ``args`` (``config_file``, ``opts``; detectron2's
    ``default_argument_parser``), with detectron2's ``default_setup`` (output folder, logs,
    config dump, seed) done. Config errors name the file or the command-line option.
    """
    cfg = load_config(args.config_file, args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # warnings of projects_lda (skipped images, dropped annotations) go to the console and log.txt
    setup_logger(
        cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="projects_lda", abbrev_name="lda"
    )
    return cfg
