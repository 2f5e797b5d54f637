"""
Training-set class statistics for the peer methods, as lazy providers (called at the first
training step, never with ``--eval-only``; the values then travel in the checkpoint, see
:mod:`projects_lda.modeling.class_freq_buffer`).

* :func:`class_image_counts`: the number of training images holding at least one (non-crowd)
  instance of each class, LVIS's ``image_count``. The federated loss samples its negative
  classes with these.
* :func:`instance_frequency_provider`: instance counts, optionally weighted by the repeat
  factors of ``RepeatFactorTrainingSampler`` (:func:`projects_lda.data.class_freq.class_frequencies`).
  Balanced softmax takes its class prior from these.
"""
from typing import Callable

import torch

from ...data.class_freq import (  # noqa: F401  (re-exported for the peer predictors)
    FREQ_SOURCES,
    class_image_counts,
    frequency_provider,
    image_count_provider,
)

__all__ = ["class_image_counts", "image_count_provider", "instance_frequency_provider"]


def instance_frequency_provider(cfg, source: str, key: str) -> Callable[[], torch.Tensor]:
    """
    A callable computing the instance frequencies of ``cfg.DATASETS.TRAIN``: ``source`` is
    ``"sampled"`` (annotation counts times the repeat factors of RepeatFactorTrainingSampler,
    when that sampler is used) or ``"annotations"`` (raw counts); ``key`` names the config key
    in errors.
    """
    if source not in FREQ_SOURCES:
        raise ValueError(f"{key} must be one of {FREQ_SOURCES}, got {source!r}")
    return frequency_provider(cfg, source)
