"""
Training-set class statistics for the peer methods, as lazy providers (called at the first
training step, never with ``--eval-only``; the values then travel in the checkpoint, see
:mod:`projects_lda.class_freq_buffer`).

* :func:`class_image_counts`: the number of training images holding at least one (non-crowd)
  instance of each class, LVIS's ``image_count``. The federated loss samples its negative
  classes with these.
* :func:`instance_frequency_provider`: instance counts, optionally weighted by the repeat
  factors of ``RepeatFactorTrainingSampler`` (:func:`projects_lda.class_freq.class_frequencies`).
  Balanced softmax takes its class prior from these.
"""
from typing import Callable, List, Sequence

import torch

from detectron2.data import DatasetCatalog

from ..class_freq import FREQ_SOURCES, class_frequencies_from_datasets

__all__ = [
    "class_image_counts",
    "class_image_counts_from_datasets",
    "image_count_provider",
    "instance_frequency_provider",
]


def class_image_counts(dataset_dicts: Sequence[dict], num_classes: int) -> torch.Tensor:
    """(C,) float32: for each class, the number of records with a non-crowd instance of it."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i, record in enumerate(dataset_dicts):
        present = set()
        for ann in record.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            c = ann["category_id"]
            if not 0 <= c < num_classes:
                raise ValueError(
                    f"annotation of image {record.get('file_name', i)!r} has category_id {c}, "
                    f"outside [0, {num_classes}) (MODEL.ROI_HEADS.NUM_CLASSES={num_classes})"
                )
            present.add(c)
        for c in present:
            counts[c] += 1
    return counts.to(torch.float32)


def class_image_counts_from_datasets(
    dataset_names: List[str], num_classes: int, *, filter_empty: bool = True
) -> torch.Tensor:
    """:func:`class_image_counts` over registered datasets."""
    dicts = []
    for name in dataset_names:
        dicts.extend(DatasetCatalog.get(name))
    if filter_empty:  # as the training loader does; images without instances count for no class
        dicts = [
            d for d in dicts if any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", []))
        ]
    if not dicts:
        raise ValueError(f"training datasets {list(dataset_names)} hold no annotated image")
    return class_image_counts(dicts, num_classes)


def image_count_provider(cfg) -> Callable[[], torch.Tensor]:
    """A callable computing the per-class image counts of ``cfg.DATASETS.TRAIN``."""
    names = list(cfg.DATASETS.TRAIN)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    filter_empty = cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS

    def provide() -> torch.Tensor:
        return class_image_counts_from_datasets(names, num_classes, filter_empty=filter_empty)

    return provide


def instance_frequency_provider(cfg, source: str, key: str) -> Callable[[], torch.Tensor]:
    """
    A callable computing the instance frequencies of ``cfg.DATASETS.TRAIN``: ``source`` is
    ``"sampled"`` (annotation counts times the repeat factors of RepeatFactorTrainingSampler,
    when that sampler is used) or ``"annotations"`` (raw counts); ``key`` names the config key
    in errors.
    """
    if source not in FREQ_SOURCES:
        raise ValueError(f"{key} must be one of {FREQ_SOURCES}, got {source!r}")
    rfs = cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    names = list(cfg.DATASETS.TRAIN)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    thresh = cfg.DATALOADER.REPEAT_THRESHOLD if rfs else 0.0
    filter_empty = cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS

    def provide() -> torch.Tensor:
        return class_frequencies_from_datasets(
            names, num_classes, source=source, repeat_thresh=thresh, filter_empty=filter_empty
        )

    return provide
