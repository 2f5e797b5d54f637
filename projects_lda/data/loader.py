"""
Reliable training on top of detectron2 0.6's ``DefaultTrainer``: CPU multi-process launch,
DDP on the CPU, non-finite losses that name their term, bad images skipped, and runs that resume
exactly where they stopped.

``train_net.py`` uses everything here; its ``Trainer`` calls :func:`make_reliable` and builds its
training data with :func:`build_reproducible_train_loader`.

**Launching.** :func:`launch` is detectron2's ``launch`` when CUDA is available. Without CUDA,
``--num-gpus N`` starts N CPU processes (``torch.multiprocessing.spawn``) joined by a gloo process
group, each with ``cpu_count // N`` torch threads (unless ``OMP_NUM_THREADS`` is set). detectron2
0.6 asserts CUDA in its worker. :func:`ddp_on_cpu` lets ``DefaultTrainer`` wrap a CPU model in
``DistributedDataParallel``: detectron2's ``create_ddp_model`` passes ``device_ids=[local_rank]``,
which DDP rejects for a CPU module. Every worker's gradients are reduced, with no
``find_unused_parameters``, even when a worker's batch holds no foreground: LDA's
foreground-only losses are then zero but stay connected to the graph.

**Non-finite losses.** detectron2 checks the *sum* of the losses on the main worker only, and its
message lists every term without saying which one broke. :class:`CheckedSimpleTrainer` gathers the
loss terms of all workers. When one is NaN or infinite it raises :class:`NonFiniteLossError` on
every worker, naming the iteration, the term(s) and the worker(s). The error comes before the
optimizer step, so the weights never take a NaN update, and no checkpoint is written for that
iteration.

**Bad data.** :class:`ReproducibleTrainLoader` replaces an image that cannot be read
(:class:`~projects_lda.mapper.ImageReadError`) by another image. The choice is deterministic, and
a warning names the file. After ``max_attempts`` (10) failures in a row it stops with an error.
The counts are written as metrics: ``data/skipped_images``, ``data/dropped_annotations`` (from
:class:`~projects_lda.mapper.SafeDatasetMapper`), ``data/dropped_polygons`` and
``data/images_without_instances``, summed over workers.

**Reproducibility and exact resume.** With the same seed (``SEED``, or a shared random seed saved
in the checkpoint when ``SEED < 0``), a run resumed from a checkpoint gives the same weights and
metrics as a run that was never interrupted (bit for bit on the CPU; on a GPU, non-deterministic
CUDA kernels make even two uninterrupted runs differ slightly). The same holds for any
``DATALOADER.NUM_WORKERS``. detectron2 0.6 cannot do this, for four reasons:

1. its training sampler restarts at the beginning of its index stream on resume, so a resumed
   run sees other images;
2. augmentations (random resize, flip) draw from a process-global RNG, and each data-loader
   worker seeds it once at start-up, so they depend on the worker count and on history;
3. the torch RNG that samples RPN anchors and ROI proposals is not saved in the checkpoint (and
   torch's ``DataLoader`` draws from it when it starts, which shifts it on resume);
4. ``DefaultTrainer`` does not save the optimizer: momentum restarts from zero and the first
   resumed step uses the warm-up start LR (``train_net.Trainer.state_dict`` saves it).

The fixes here:

* batch ``i`` of each worker is a pure function of (seed, rank, ``i``). Index batches, grouped by
  aspect ratio as detectron2 does but on the dataset records, are formed from the sampler's
  stream and skipped cheaply (no image is read) up to the resume iteration;
* each image is mapped under an RNG seeded from (seed, rank, position in the stream), and the
  DataLoader starts without touching the global RNGs;
* :class:`RunStateHook` reseeds torch / numpy / random at the start of every iteration from
  (seed, rank, iteration). It also saves in the checkpoint the seed, the data counts and the last
  20 values of every metric, so the smoothed values that ``metrics.json`` holds continue exactly.

The LDA alpha window (``accuracy_window.counts/position``) and the class frequencies
(``class_freq``) are model buffers, so they are in every checkpoint; the LR schedule is saved by
detectron2's ``LRScheduler`` hook.

Compared with detectron2's ``build_detection_train_loader``, the order of the training images
and their augmentations differ (same sampler, same distribution): runs made before this loader
are not reproduced bit for bit.
"""
import contextlib
import itertools
import logging
import math
import os
import random
from collections import Counter
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.data import get_detection_dataset_dicts
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import (
    RandomSubsetTrainingSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
)
from detectron2.engine import AMPTrainer, SimpleTrainer, hooks
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from .checkpoint import SafeCheckpointer
from .mapper import ImageReadError, SafeDatasetMapper

__all__ = [
    "launch",
    "ddp_on_cpu",
    "NonFiniteLossError",
    "CheckedSimpleTrainer",
    "CheckedAMPTrainer",
    "ReproducibleTrainLoader",
    "build_reproducible_train_loader",
    "RunStateHook",
    "make_reliable",
    "DATA_COUNTERS",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)
# data-health counters written as ``data/<name>`` metrics
DATA_COUNTERS = (
    "skipped_images",
    "dropped_annotations",
    "dropped_polygons",
    "images_without_instances",
)
# purposes mixed into derived seeds, so streams for different uses never coincide
_DATA, _FALLBACK, _STEP = 0xDA7A, 0xFA11, 0x57E9


# =============================================================================== launching
def _find_free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    main_func,
    num_gpus_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """
    detectron2's ``launch`` (same arguments) when CUDA is available or a single process is
    asked for; otherwise ``num_gpus_per_machine`` CPU processes joined by a gloo process group.
    ``dist_url="auto"`` picks a free local port (single machine).
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1 or torch.cuda.is_available():
        return d2_launch(
            main_func,
            num_gpus_per_machine,
            num_machines=num_machines,
            machine_rank=machine_rank,
            dist_url=dist_url,
            args=args,
            timeout=timeout,
        )
    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url='auto' works on a single machine; give tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    logger.info(
        "CUDA is not available: starting %d CPU processes (gloo backend) at %s",
        num_gpus_per_machine,
        dist_url,
    )
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_worker(
    local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout
):
    if "OMP_NUM_THREADS" not in os.environ:  # N processes x all cores would oversubscribe
        torch.set_num_threads(max(1, _cpu_count() // num_per_machine))
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    # the local process group (ranks on this machine), as detectron2's launch sets it up
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_per_machine):
        ranks_on_i = list(range(i * num_per_machine, (i + 1) * num_per_machine))
        pg = dist.new_group(ranks_on_i)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg
    comm.synchronize()
    try:
        main_func(*args)
    finally:  # no barrier here: a worker that failed must not wait for the others
        dist.destroy_process_group()


@contextlib.contextmanager
def ddp_on_cpu():
    """
    While active, detectron2's ``create_ddp_model`` (used by ``DefaultTrainer.__init__``) wraps
    a model whose parameters are on the CPU with ``device_ids=None``, as DDP requires.
    """
    from detectron2.engine import defaults

    original = defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        if "device_ids" not in kwargs and all(p.device.type == "cpu" for p in model.parameters()):
            kwargs["device_ids"] = None
        return original(model, **kwargs)

    defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        defaults.create_ddp_model = original


# =============================================================================== losses
class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names the iteration, term(s), worker(s)."""


def write_checked_metrics(loss_dict, data_time, prefix="", data_loader=None):
    """
    detectron2's ``SimpleTrainer.write_metrics``, but every worker checks every worker's loss
    terms and raises :class:`NonFiniteLossError` naming the bad ones; also writes the data
    counters of :class:`ReproducibleTrainLoader` (summed over workers) as ``data/*`` metrics.
    """
    losses = {k: float(v.detach().cpu().item()) for k, v in loss_dict.items()}
    counts = dict(getattr(data_loader, "counters", None) or {})
    gathered = comm.all_gather({"losses": losses, "data_time": data_time, "counts": counts})
    storage = get_event_storage()
    world = len(gathered)

    bad = []
    for rank, g in enumerate(gathered):
        for k, v in g["losses"].items():
            if not math.isfinite(v):
                bad.append((k, v, rank))
    if not bad:
        totals = [sum(g["losses"].values()) for g in gathered]
        bad = [(f"{prefix}total_loss", t, r) for r, t in enumerate(totals) if not math.isfinite(t)]
    if bad:
        terms = sorted({k for k, _, _ in bad})
        where = ", ".join(
            f"{k}={v}" + (f" on worker {r}" if world > 1 else "") for k, v, r in bad
        )
        raise NonFiniteLossError(
            f"Loss became non-finite at iteration {storage.iter}: {', '.join(terms)} "
            f"({where}). The optimizer step of this iteration was not taken and no checkpoint "
            f"was written for it. Losses of worker 0: "
            + ", ".join(f"{k}={v:.4g}" for k, v in gathered[0]["losses"].items())
        )

    if comm.is_main_process():
        storage.put_scalar("data_time", float(np.max([g["data_time"] for g in gathered])))
        metrics = {k: float(np.mean([g["losses"][k] for g in gathered])) for k in losses}
        storage.put_scalar(f"{prefix}total_loss", sum(metrics.values()))
        if len(metrics) > 1:
            storage.put_scalars(**metrics)
        if isinstance(data_loader, ReproducibleTrainLoader):
            total = Counter(data_loader.counter_offset)
            for g in gathered:
                total.update(g["counts"])
            storage.put_scalars(
                smoothing_hint=False, **{f"data/{k}": float(total[k]) for k in DATA_COUNTERS}
            )


class _CheckedMetrics:
    def _write_metrics(self, loss_dict, data_time, prefix=""):
        write_checked_metrics(loss_dict, data_time, prefix, data_loader=self.data_loader)


class CheckedSimpleTrainer(_CheckedMetrics, SimpleTrainer):
    """``SimpleTrainer`` whose metrics check names non-finite loss terms (see the module doc)."""


class CheckedAMPTrainer(_CheckedMetrics, AMPTrainer):
    """``AMPTrainer`` whose metrics check names non-finite loss terms (see the module doc)."""


# =============================================================================== RNG
def derive_seed(*entropy) -> int:
    """A 63-bit seed from integers (hashing, so nearby inputs give unrelated seeds)."""
    words = np.random.SeedSequence([int(e) % (1 << 64) for e in entropy]).generate_state(2)
    return ((int(words[0]) << 32) | int(words[1])) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seeds python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def _fixed_rng(seed=None):
    """
    Runs the body with the random / numpy / torch-CPU RNGs seeded with ``seed`` (left as they
    are if None), then restores their states: the body does not disturb the caller's streams.
    """
    py, npy, tch = random.getstate(), np.random.get_state(), torch.get_rng_state()
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(tch)


# =============================================================================== data
def _index_batches(sampler, groups, batch_size):
    """
    Infinite stream of index batches ``[(position, dataset_index), ...]`` from ``sampler``,
    grouped by aspect ratio (``groups[index]`` is 0 for landscape, 1 otherwise) as detectron2's
    ``AspectRatioGroupedDataset`` groups mapped images; one group when ``groups`` is None.
    """
    buckets = ([], [])
    for position, index in enumerate(sampler):
        bucket = buckets[0 if groups is None else groups[index]]
        bucket.append((position, int(index)))
        if len(bucket) == batch_size:
            yield list(bucket)
            bucket.clear()


def _identity(x):
    return x


class _MappedBatches(torch.utils.data.IterableDataset):
    """Maps the index batches; data-loader worker ``w`` of ``N`` makes batches ``w, w+N, ...``."""

    def __init__(self, loader, sampler, start_batch):
        self.dataset = loader.dataset
        self.mapper = loader.mapper
        self.groups = loader.groups
        self.batch_size = loader.batch_size
        self.seed = loader.seed
        self.rank = comm.get_rank()
        self.max_attempts = loader.max_attempts
        self.sampler = sampler
        self.start_batch = start_batch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, num = (info.id, info.num_workers) if info is not None else (0, 1)
        batches = _index_batches(self.sampler, self.groups, self.batch_size)
        for batch in itertools.islice(batches, self.start_batch + wid, None, num):
            events = Counter()
            mapped = [self._map(position, index, events) for position, index in batch]
            yield mapped, dict(events)

    def _map(self, position, index, events):
        pop_events = getattr(self.mapper, "pop_events", None)
        error = None
        for attempt in range(self.max_attempts):
            record = self.dataset[index]
            with _fixed_rng(derive_seed(self.seed, _DATA, self.rank, position, attempt)):
                try:
                    out = self.mapper(record)
                except ImageReadError as e:
                    out, error = None, e
            if pop_events is not None:
                events.update(pop_events())
            if out is not None:
                instances = out.get("instances")
                if instances is not None and len(instances) == 0:
                    events["images_without_instances"] += 1
                return out
            events["skipped_images"] += 1
            reason = error if error is not None else (
                f"the mapper returned None for {record.get('file_name', index)}"
            )
            logger.warning("Skipping a training image (%s); another image is used instead", reason)
            fallback = derive_seed(self.seed, _FALLBACK, self.rank, position, attempt)
            index = int(np.random.default_rng(fallback).integers(len(self.dataset)))
        raise ImageReadError(
            f"{self.max_attempts} training images in a row could not be read (the last: {error}). "
            "Check that the image folder is complete and readable."
        )


class ReproducibleTrainLoader:
    """
    Infinite iterable of training batches (lists of mapped dicts, ``IMS_PER_BATCH / world_size``
    per worker) that is a pure function of (seed, rank, iteration), whatever
    ``DATALOADER.NUM_WORKERS`` is; see the module docstring. Nothing is read before the first
    batch is drawn, so :meth:`set_start` can still move the start (on resume).

    Attributes:
        seed: the seed of the sampler, of the augmentations and of the per-iteration RNG.
        counters: data-health counts of this worker since it started (``DATA_COUNTERS``).
        counter_offset: counts carried over from the checkpoint a run resumed from.
    """

    def __init__(
        self,
        dataset_dicts,
        mapper,
        *,
        sampler_factory,
        total_batch_size: int,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        max_attempts: int = 10,
    ):
        world_size = comm.get_world_size()
        if total_batch_size <= 0 or total_batch_size % world_size:
            raise ValueError(
                f"SOLVER.IMS_PER_BATCH={total_batch_size} must be a positive multiple of the "
                f"number of workers ({world_size})"
            )
        self.batch_size = total_batch_size // world_size
        self.groups = None
        if aspect_ratio_grouping:
            self.groups = np.array(
                [0 if d.get("width", 0) > d.get("height", 0) else 1 for d in dataset_dicts],
                dtype=np.uint8,
            )
        self.dataset = DatasetFromList(dataset_dicts, copy=False)  # serialized: no COW growth
        self.mapper = mapper
        self.sampler_factory = sampler_factory
        self.num_workers = num_workers
        self.seed = int(seed)
        self.max_attempts = max_attempts
        self.start_iter = 0
        self.counters = Counter()
        self.counter_offset = Counter()
        self._iter = None

    def set_start(self, start_iter: int, seed: int = None) -> None:
        """Makes the first batch drawn batch ``start_iter`` of the stream of ``seed``."""
        if self._iter is not None:
            raise RuntimeError("set_start() must be called before the first batch is drawn")
        self.start_iter = int(start_iter)
        if seed is not None:
            self.seed = int(seed)

    def __iter__(self):
        return self

    def __next__(self):
        if self._iter is None:
            dataset = _MappedBatches(self, self.sampler_factory(self.seed), self.start_iter)
            # torch's DataLoader draws a base seed from the global torch RNG when it starts: not
            # from the model's stream (it would shift it on resume); the workers do not use it
            with _fixed_rng():
                self._iter = iter(
                    torch.utils.data.DataLoader(
                        dataset,
                        batch_size=None,
                        num_workers=self.num_workers,
                        collate_fn=_identity,
                    )
                )
        batch, events = next(self._iter)
        self.counters.update(events)
        return batch


def _sampler_factory(cfg, dataset_dicts):
    name = cfg.DATALOADER.SAMPLER_TRAIN
    logger.info("Using training sampler %s", name)
    n = len(dataset_dicts)
    if name == "TrainingSampler":
        return lambda seed: TrainingSampler(n, seed=seed)
    if name == "RepeatFactorTrainingSampler":
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD
        )
        return lambda seed: RepeatFactorTrainingSampler(factors, seed=seed)
    if name == "RandomSubsetTrainingSampler":
        ratio = cfg.DATALOADER.RANDOM_SUBSET_RATIO
        return lambda seed: RandomSubsetTrainingSampler(
            n, ratio, seed_shuffle=seed, seed_subset=seed
        )
    raise ValueError(f"DATALOADER.SAMPLER_TRAIN: unknown training sampler {name!r}")


def build_reproducible_train_loader(cfg, mapper=None):
    """
    The training loader of ``cfg`` (the datasets, filters, sampler, batch size, aspect-ratio
    grouping and worker count of detectron2's ``build_detection_train_loader``) as a
    :class:`ReproducibleTrainLoader`. ``mapper`` defaults to ``SafeDatasetMapper(cfg, True)``.
    """
    dataset = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
        if cfg.MODEL.KEYPOINT_ON
        else 0,
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()  # all workers call this
    return ReproducibleTrainLoader(
        dataset,
        mapper if mapper is not None else SafeDatasetMapper(cfg, is_train=True),
        sampler_factory=_sampler_factory(cfg, dataset),
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        seed=seed,
    )


# =============================================================================== run state
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
            buf = storage._history[name]  # detectron2 0.6 EventStorage internals
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


def make_reliable(trainer) -> None:
    """
    Applies the reliability changes to a constructed ``DefaultTrainer``: the metrics check of
    :class:`CheckedSimpleTrainer`, :class:`~projects_lda.checkpoint.SafeCheckpointer`, and a
    :class:`RunStateHook`. Call it at the end of the trainer's ``__init__``.
    """
    inner = trainer._trainer
    if type(inner) is SimpleTrainer:  # same state, checked metrics
        inner.__class__ = CheckedSimpleTrainer
    elif type(inner) is AMPTrainer:
        inner.__class__ = CheckedAMPTrainer

    old = trainer.checkpointer
    new = SafeCheckpointer(
        old.model, old.save_dir, save_to_disk=old.save_to_disk, **old.checkpointables
    )
    trainer.checkpointer = new
    for h in trainer._hooks:
        if getattr(h, "checkpointer", None) is old:
            h.checkpointer = new

    loader = inner.data_loader
    if isinstance(loader, ReproducibleTrainLoader):
        seed = loader.seed
    else:
        seed = trainer.cfg.SEED if trainer.cfg.SEED >= 0 else comm.shared_random_seed()
    trainer.register_hooks([RunStateHook(seed, loader)])
