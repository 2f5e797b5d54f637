"""
Training class statistics held by a box predictor as a checkpointed buffer, computed lazily.

Several predictors need one number per class from the training set: LDA's instance frequencies
``n_k``, the image counts of the federated loss, the class prior of balanced softmax. They all
follow the same rule, which this mixin implements once:

* the statistics are a buffer ``class_freq`` (shape ``(C,)``) with a flag ``class_freq_ready``,
  so they are saved in every checkpoint and restored by ``load_state_dict``;
* the predictor may be given a callable instead of a tensor (for example
  :func:`projects_lda.data.class_freq.frequency_provider`); it is called only when the statistics
  are first needed in training and never when they came from a checkpoint, so ``--eval-only``
  does not read the training set.

Usage, in an ``nn.Module`` (after ``nn.Module.__init__`` has run)::

    class MyPredictor(ClassFreqBufferMixin, FastRCNNOutputLayers):
        def __init__(self, input_shape, *, class_freq=None, **kwargs):
            super().__init__(input_shape, **kwargs)
            self.init_class_freq(self.num_classes, class_freq)

        def losses(self, predictions, proposals):
            freq = self.get_class_freq()  # computed here the first time, if needed
"""
from typing import Callable, Dict, Optional, Union

import torch

__all__ = ["ClassFreqBufferMixin", "validate_class_freq", "ClassFreqSpec"]

ClassFreqSpec = Union[torch.Tensor, Callable[[], torch.Tensor], None]


def validate_class_freq(
    class_freq, num_classes: Optional[int] = None, what: str = "class frequencies"
) -> torch.Tensor:
    """
    The one check of class statistics in this project: returns ``class_freq`` as a flat float32
    tensor after checking it has ``num_classes`` entries (any number when None), all finite and
    >= 0, at least one > 0. Raises ``ValueError`` naming the problem otherwise.
    """
    freq = torch.as_tensor(class_freq, dtype=torch.float32).detach().flatten()
    if num_classes is not None and freq.numel() != num_classes:
        raise ValueError(
            f"{what} have {freq.numel()} entries but the model has "
            f"MODEL.ROI_HEADS.NUM_CLASSES={num_classes}"
        )
    if not torch.isfinite(freq).all() or (freq < 0).any():
        raise ValueError(f"{what} must be finite and >= 0, got {freq.tolist()[:10]}...")
    if not (freq > 0).any():
        raise ValueError(f"{what} are all zero: no class has a training sample")
    return freq


class ClassFreqBufferMixin:
    """
    Mixin for ``nn.Module`` predictors: a ``(C,)`` buffer ``class_freq`` of training class
    statistics and a boolean buffer ``class_freq_ready``, filled from a tensor, from a callable
    the first time :meth:`get_class_freq` is called, or from a checkpoint.

    ``class_freq_description`` names the statistics in error messages.
    """

    class_freq_description = "class frequencies"

    def init_class_freq(self, num_classes: int, class_freq: ClassFreqSpec = None) -> None:
        """
        Registers the buffers. ``class_freq`` is a ``(C,)`` tensor, a callable returning one when
        first needed in training, or None when the values will come from a checkpoint.
        """
        self.register_buffer("class_freq", torch.zeros(num_classes))
        self.register_buffer("class_freq_ready", torch.zeros((), dtype=torch.bool))
        self._class_freq_fn: Optional[Callable[[], torch.Tensor]] = (
            class_freq if callable(class_freq) else None
        )
        self._forget_class_freq()
        if class_freq is not None and not callable(class_freq):
            self.set_class_freq(class_freq)

    def _forget_class_freq(self) -> None:
        # Host-side memory of the buffers: once the statistics are known, a training step reads
        # neither the device flag nor recomputes what derives from them (each would be a host
        # synchronisation per step on a GPU). Cleared whenever the buffers may change.
        self._class_freq_known = False
        self._class_stats: Dict[str, torch.Tensor] = {}

    def set_class_freq(self, class_freq) -> None:
        """Sets the statistics (validated by :func:`validate_class_freq`)."""
        freq = validate_class_freq(
            class_freq, self.class_freq.numel(), self.class_freq_description
        )
        self.class_freq.copy_(freq.to(self.class_freq.device))
        self.class_freq_ready.fill_(True)
        self._forget_class_freq()

    def get_class_freq(self) -> torch.Tensor:
        """The ``(C,)`` statistics, computed by the provider the first time if needed."""
        if not self._class_freq_known:
            if not bool(self.class_freq_ready):
                if self._class_freq_fn is None:
                    raise RuntimeError(
                        f"{type(self).__name__}: the {self.class_freq_description} are not set: "
                        "pass class_freq to the predictor, call set_class_freq(), or load a "
                        "checkpoint trained with this predictor"
                    )
                self.set_class_freq(self._class_freq_fn())
            self._class_freq_known = True
        return self.class_freq

    def class_stat(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """
        ``fn(class_freq)``, computed once and kept until the statistics change (set, loaded from
        a checkpoint) or move to another device: e.g. LDA's importance weights, constant once
        the frequencies are known.
        """
        freq = self.get_class_freq()
        stat = self._class_stats.get(name)
        if stat is None or stat.device != freq.device:
            stat = self._class_stats[name] = fn(freq)
        return stat

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._forget_class_freq()
