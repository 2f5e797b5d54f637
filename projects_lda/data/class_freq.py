"""
Training class statistics from detectron2 dataset dicts: the instance frequencies ``n_k`` of
LDA's importance weights (Eq. 5) and of balanced softmax's prior, and the per-class image counts
of the federated loss; with lazy providers that compute them at the first training step (never
with ``--eval-only``: the values then travel in the checkpoint, see
:mod:`projects_lda.modeling.class_freq_buffer`).

Two definitions of instance frequencies (``source``; LDA uses ``"sampled"``, balanced softmax
``MODEL.PEERS.BALANCED_SOFTMAX.FREQ_SOURCE``):

* ``"sampled"`` (default): the expected number of instances of each class *that the model sees*
  per pass over the data. With ``RepeatFactorTrainingSampler`` an image with repeat factor r(I) is
  seen r(I) times on average, so ``n_k = sum_I r(I) * #instances_k(I)``; with any other sampler it
  equals the annotation counts. Eq. 5 reweights the training label distribution ``P_u`` into the
  balanced one, and under repeat-factor sampling ``P_u`` is the resampled distribution: reweighting
  by the raw annotation counts would correct for an imbalance RFS already partly removed.
* ``"annotations"``: the raw instance counts in the annotations (the distribution without RFS).
"""
from typing import Callable, List, Sequence

import torch

from detectron2.data import DatasetCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler

__all__ = [
    "class_frequencies",
    "class_frequencies_from_datasets",
    "class_image_counts",
    "load_training_dicts",
    "frequency_provider",
    "image_count_provider",
    "FREQ_SOURCES",
]

FREQ_SOURCES = ("sampled", "annotations")


def _check_source(source: str, key: str = "class frequency source") -> None:
    if source not in FREQ_SOURCES:
        raise ValueError(f"{key} must be one of {FREQ_SOURCES}, got {source!r}")


def _classes_of(record, index: int, num_classes: int):
    """Non-crowd category ids of one record, checked against ``num_classes``."""
    classes = []
    for ann in record.get("annotations", []):
        if ann.get("iscrowd", 0):
            continue
        c = ann["category_id"]
        if not 0 <= c < num_classes:
            raise ValueError(
                f"annotation of image {record.get('file_name', index)!r} has category_id {c}, "
                f"outside [0, {num_classes}) (MODEL.ROI_HEADS.NUM_CLASSES={num_classes})"
            )
        classes.append(c)
    return classes


def class_frequencies(
    dataset_dicts: Sequence[dict],
    num_classes: int,
    *,
    source: str = "sampled",
    repeat_thresh: float = 0.0,
) -> torch.Tensor:
    """
    Args:
        dataset_dicts: training records in detectron2's format (contiguous category ids).
        num_classes: C.
        source: ``"sampled"`` or ``"annotations"`` (see the module docstring).
        repeat_thresh: RFS threshold t; 0 means no repeat-factor sampling.
    Returns:
        (C,) float32 tensor of frequencies (zero for classes with no training sample).
    """
    _check_source(source)
    if source == "sampled" and repeat_thresh > 0:
        repeats = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset_dicts, repeat_thresh
        ).tolist()
    else:
        repeats = [1.0] * len(dataset_dicts)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i, (record, r) in enumerate(zip(dataset_dicts, repeats)):
        for c in _classes_of(record, i, num_classes):
            counts[c] += r
    return counts.to(torch.float32)


def class_image_counts(dataset_dicts: Sequence[dict], num_classes: int) -> torch.Tensor:
    """(C,) float32: for each class, the number of records with a non-crowd instance of it."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for i, record in enumerate(dataset_dicts):
        for c in set(_classes_of(record, i, num_classes)):
            counts[c] += 1
    return counts.to(torch.float32)


def load_training_dicts(dataset_names: List[str], filter_empty: bool = True) -> List[dict]:
    """The records of registered datasets, filtered as the training loader filters them."""
    dicts = []
    for name in dataset_names:
        dicts.extend(DatasetCatalog.get(name))
    if filter_empty:  # as get_detection_dataset_dicts(filter_empty=True) does
        dicts = [d for d in dicts if any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", []))]
    if not dicts:
        raise ValueError(f"training datasets {list(dataset_names)} hold no annotated image")
    return dicts


def class_frequencies_from_datasets(
    dataset_names: List[str],
    num_classes: int,
    *,
    source: str = "sampled",
    repeat_thresh: float = 0.0,
    filter_empty: bool = True,
) -> torch.Tensor:
    """:func:`class_frequencies` over registered datasets, loaded as the train loader loads them."""
    dicts = load_training_dicts(dataset_names, filter_empty)
    return class_frequencies(dicts, num_classes, source=source, repeat_thresh=repeat_thresh)


def frequency_provider(
    cfg, source: str = "sampled", key: str = "class frequency source"
) -> Callable[[], torch.Tensor]:
    """
    A callable computing the instance frequencies of ``cfg.DATASETS.TRAIN`` when first needed:
    ``source`` is ``"sampled"`` (annotation counts times the repeat factors of
    RepeatFactorTrainingSampler, when that sampler is used) or ``"annotations"`` (raw counts),
    checked now; ``key`` names the config key that set it in the error.
    """
    _check_source(source, key)
    sampled_rfs = cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    names = list(cfg.DATASETS.TRAIN)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    thresh = cfg.DATALOADER.REPEAT_THRESHOLD if sampled_rfs else 0.0
    filter_empty = cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS

    def provide() -> torch.Tensor:
        return class_frequencies_from_datasets(
            names, num_classes, source=source, repeat_thresh=thresh, filter_empty=filter_empty
        )

    return provide


def image_count_provider(cfg) -> Callable[[], torch.Tensor]:
    """A callable computing the per-class image counts of ``cfg.DATASETS.TRAIN``."""
    names = list(cfg.DATASETS.TRAIN)
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    filter_empty = cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS

    def provide() -> torch.Tensor:
        return class_image_counts(load_training_dicts(names, filter_empty), num_classes)

    return provide
