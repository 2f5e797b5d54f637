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

Over registered datasets (the providers, called at the first training step), the statistics are
computed from the per-record class lists that loading an LVIS-format dataset puts in its metadata
(:data:`projects_lda.data.datasets.CLASS_LISTS_KEY`), with numpy; the dataset is loaded again only
when those are not available (another loader, or a changed file).
"""
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler

from .datasets import CLASS_LISTS_KEY

__all__ = [
    "class_frequencies",
    "class_frequencies_from_datasets",
    "class_image_counts",
    "load_training_dicts",
    "training_records",
    "repeat_factors_from_lists",
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


def training_records(dicts: Sequence[dict]) -> List[dict]:
    """The records with a non-crowd annotation: those the training loader keeps
    (``get_detection_dataset_dicts(filter_empty=True)``, detectron2's FILTER_EMPTY_ANNOTATIONS)."""
    return [d for d in dicts if any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", []))]


def load_training_dicts(dataset_names: List[str], filter_empty: bool = True) -> List[dict]:
    """The records of registered datasets, filtered as the training loader filters them."""
    dicts = []
    for name in dataset_names:
        dicts.extend(DatasetCatalog.get(name))
    if filter_empty:
        dicts = training_records(dicts)
    if not dicts:
        raise ValueError(f"training datasets {list(dataset_names)} hold no annotated image")
    return dicts


def _class_lists_of(name):
    """The class lists of the last load of dataset ``name`` (its metadata's
    :data:`~projects_lda.data.datasets.CLASS_LISTS_KEY`), None when there was none in this
    process or its file changed since."""
    entry = (MetadataCatalog.get(name).get(CLASS_LISTS_KEY, None) if name in MetadataCatalog
             else None)
    if entry is None:
        return None
    json_file, stamp, lists = entry
    try:
        st = os.stat(json_file)
    except OSError:
        return None
    return lists if (st.st_mtime_ns, st.st_size) == stamp else None


def _loaded_class_lists(
    dataset_names: List[str], num_classes: int, filter_empty: bool
) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """
    ``(category_ids, counts per record, crowd flags)`` of the training records, filtered as the
    training loader filters them (records without a non-crowd annotation dropped), from the
    class lists the datasets' metadata keeps from their load; None if any dataset was not loaded
    by :func:`projects_lda.data.datasets.load_lvis_format` in this process, or its file changed
    since.
    """
    parts = [_class_lists_of(name) for name in dataset_names]
    if not parts or any(p is None for p in parts):
        return None
    for name, (cats, _, _) in zip(dataset_names, parts):
        if cats.size and not 0 <= int(cats.min()) <= int(cats.max()) < num_classes:
            bad = int(cats.max()) if cats.max() >= num_classes else int(cats.min())
            raise ValueError(
                f"dataset {name!r} has category_id {bad}, outside [0, {num_classes}) "
                f"(MODEL.ROI_HEADS.NUM_CLASSES={num_classes})"
            )
    cats = np.concatenate([p[0] for p in parts]).astype(np.int64)
    counts = np.concatenate([p[1] for p in parts])
    crowd = np.concatenate([p[2] for p in parts])
    if filter_empty:  # as detectron2's filter_images_with_only_crowd_annotations
        record = np.repeat(np.arange(counts.size), counts)
        keep = np.bincount(record[~crowd], minlength=counts.size) > 0
        cats, crowd, counts = cats[keep[record]], crowd[keep[record]], counts[keep]
    if not counts.size or not (~crowd).any():
        raise ValueError(f"training datasets {list(dataset_names)} hold no annotated image")
    return cats, counts, crowd


def repeat_factors_from_lists(
    cats: np.ndarray, counts: np.ndarray, num_classes: int, repeat_thresh: float
) -> np.ndarray:
    """
    detectron2's ``RepeatFactorTrainingSampler.repeat_factors_from_category_frequency`` on
    per-record class lists, vectorised: ``r(c) = max(1, sqrt(t / f(c)))`` with ``f(c)`` the
    fraction of records holding class c, and ``r(I) = max_{c in I} r(c)`` (1 without instance).
    Like detectron2's, it counts crowd annotations too.
    """
    num_records = counts.size
    record = np.repeat(np.arange(num_records), counts)
    pairs = np.unique(record * num_classes + cats)
    image_count = np.bincount(pairs % num_classes, minlength=num_classes)
    fraction = image_count / num_records
    with np.errstate(divide="ignore"):
        class_factor = np.maximum(1.0, np.sqrt(repeat_thresh / fraction))
    factors = np.ones(num_records)
    np.maximum.at(factors, pairs // num_classes, class_factor[pairs % num_classes])
    return factors


def class_frequencies_from_datasets(
    dataset_names: List[str],
    num_classes: int,
    *,
    source: str = "sampled",
    repeat_thresh: float = 0.0,
    filter_empty: bool = True,
) -> torch.Tensor:
    """:func:`class_frequencies` over registered datasets, loaded as the train loader loads them."""
    _check_source(source)
    lists = _loaded_class_lists(dataset_names, num_classes, filter_empty)
    if lists is None:
        dicts = load_training_dicts(dataset_names, filter_empty)
        return class_frequencies(dicts, num_classes, source=source, repeat_thresh=repeat_thresh)
    cats, counts, crowd = lists
    weights = None
    if source == "sampled" and repeat_thresh > 0:
        factors = repeat_factors_from_lists(cats, counts, num_classes, repeat_thresh)
        weights = np.repeat(factors, counts)[~crowd]
    freq = np.bincount(cats[~crowd], weights=weights, minlength=num_classes)
    return torch.from_numpy(freq.astype(np.float64)).to(torch.float32)


def _image_counts_from_datasets(dataset_names, num_classes, filter_empty) -> torch.Tensor:
    lists = _loaded_class_lists(dataset_names, num_classes, filter_empty)
    if lists is None:
        return class_image_counts(load_training_dicts(dataset_names, filter_empty), num_classes)
    cats, counts, crowd = lists
    record = np.repeat(np.arange(counts.size), counts)
    pairs = np.unique((record * num_classes + cats)[~crowd])
    freq = np.bincount(pairs % num_classes, minlength=num_classes)
    return torch.from_numpy(freq.astype(np.float64)).to(torch.float32)


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
        return _image_counts_from_datasets(names, num_classes, filter_empty)

    return provide
