"""
The training loader: detectron2's datasets, filters, sampler, batch size and aspect-ratio grouping,
made a pure function of (seed, rank, iteration) so that a resumed run sees the batches an
uninterrupted run would have seen, and unreadable images are skipped with a warning.

* batch ``i`` of each worker is formed from the sampler's stream and skipped cheaply (no image is
  read) up to the resume iteration (:meth:`ReproducibleTrainLoader.set_start`);
* each image is mapped under an RNG seeded from (seed, rank, position in the stream), so the
  augmentations do not depend on ``DATALOADER.NUM_WORKERS`` or on history; the DataLoader starts
  without touching the global RNGs;
* an image that cannot be read (:class:`~projects_lda.data.mapper.ImageReadError`) is replaced
  by another one, chosen deterministically, with a warning naming the file; after
  ``max_attempts`` (10) failures in a row the loader stops with an error. The counts
  (:data:`DATA_COUNTERS`) are written as ``data/*`` metrics by the training loop.

Compared with detectron2's ``build_detection_train_loader``, the order of the training images
and their augmentations differ (same sampler, same distribution). See docs/reliability.md.
"""
import contextlib
import itertools
import logging
import random
from collections import Counter

import numpy as np
import torch

from detectron2.data import get_detection_dataset_dicts
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler
from detectron2.utils import comm

from .datasets import check_training_datasets
from .mapper import ImageReadError, SafeDatasetMapper

__all__ = [
    "DATA_COUNTERS",
    "ReproducibleTrainLoader",
    "build_reproducible_train_loader",
    "derive_seed",
    "seed_everything",
]

logger = logging.getLogger(__name__)

# data-health counters written as ``data/<name>`` metrics
DATA_COUNTERS = (
    "skipped_images",
    "dropped_annotations",
    "dropped_polygons",
    "images_without_instances",
)
# purposes mixed into derived seeds, so streams for different uses never coincide
_DATA, _FALLBACK = 0xDA7A, 0xFA11


# ------------------------------------------------------------------------------- RNG
def derive_seed(*entropy) -> int:
    """A 63-bit seed from integers (hashing, so nearby inputs give unrelated seeds)."""
    words = np.random.SeedSequence([int(e) % (1 << 64) for e in entropy]).generate_state(2)
    return ((int(words[0]) << 32) | int(words[1])) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """
    Seeds python's ``random``, numpy's global RNG and torch (CPU and CUDA) with a 63-bit seed.
    Not detectron2's ``seed_all_rng``: it hands the seed to ``np.random.seed`` unreduced (which
    takes < 2**32) and sets ``PYTHONHASHSEED``; these seeds keep their 63 bits for torch.
    """
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
    if seed is not None:  # not seed_everything: the CUDA RNG is neither seeded nor restored
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(tch)


# ------------------------------------------------------------------------------- batches
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
    """
    ``seed -> sampler`` for ``DATALOADER.SAMPLER_TRAIN``. Not detectron2's choice of sampler
    (inside ``build_detection_train_loader``): that one draws its seed when it is built, and
    the loader must set the seed saved in the checkpoint when a run resumes.
    """
    name = cfg.DATALOADER.SAMPLER_TRAIN
    logger.info("Using training sampler %s", name)
    if name == "TrainingSampler":
        n = len(dataset_dicts)
        return lambda seed: TrainingSampler(n, seed=seed)
    if name == "RepeatFactorTrainingSampler":
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD
        )
        return lambda seed: RepeatFactorTrainingSampler(factors, seed=seed)
    raise ValueError(
        f"DATALOADER.SAMPLER_TRAIN: {name!r} is not supported by the reproducible training "
        "loader (TrainingSampler, RepeatFactorTrainingSampler)"
    )


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
    check_training_datasets(cfg)  # after the load: the datasets' metadata is set
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
