"""
Federated loss as a Fast R-CNN box predictor.

Paper: X. Zhou, V. Koltun, P. Kraehenbuehl, "Probabilistic two-stage detection", arXiv:2103.07461
(2021); the federated loss is their LVIS classification loss (used in CenterNet2, and later added
to detectron2 as ``MODEL.ROI_BOX_HEAD.USE_FED_LOSS``).

LVIS is a federated dataset: an image is annotated exhaustively only for some classes, so a
softmax (or a sigmoid over all C classes) penalises many classes whose absence was never checked,
and rare classes receive a flood of negative gradients. The federated loss is a sigmoid
cross-entropy over a subset S of classes per mini-batch::

    L = (1/R) sum_{i=1..R} sum_{c in S} BCE(z_ic, y_ic),
    BCE(z, y) = -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))

with R the sampled proposals (foreground and background), y_ic = 1 iff proposal i is matched to
a ground truth of class c (background proposals: y_i = 0 for every class), and
``S = P ∪ N``: P the classes of the foreground proposals of the batch, N negatives drawn without
replacement from the other classes with probability ``∝ image_count_c ** 0.5``, until
``|S| = 50`` (``MODEL.PEERS.FED_LOSS.NUM_CLASSES`` and ``FREQ_WEIGHT_POWER``).

Choices:

* **Background.** There is no background logit: the classifier has C outputs, and a background
  proposal is a sample whose every target in S is 0. At test time the score of class c is
  ``sigmoid(z_c)`` and, to keep the parent's ``(R, C + 1)`` layout, the background column is the
  probability that no class fires under independent sigmoids, ``prod_c (1 - sigmoid(z_c))``
  (``fast_rcnn_inference`` drops it; it is only used by the training accuracy metrics).
* ``|S|`` counts foreground classes only. (detectron2 and CenterNet2 count the background index
  among the positives when the batch has background proposals, so they draw one negative less.)
  Classes with image count 0 are never drawn as negatives; if too few classes can be drawn, S is
  smaller.
* Frequencies are the per-class image counts of ``DATASETS.TRAIN`` (LVIS's ``image_count``),
  computed at the first training step and saved in checkpoints (buffer ``class_freq``).
* Negatives are drawn from the predictor's own RNG (seeded from ``SEED`` and the worker's rank,
  its state saved in checkpoints, so a resumed run draws the same classes), by Gumbel-top-k on
  the device: the same law as drawing without replacement, without reading anything back to
  the host in a training step.
* The classifier bias starts at ``log(p / (1 - p))`` with p = ``PRIOR_PROB`` = 0.01, as in the
  authors' code.
"""
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.utils import comm

from ...data.class_freq import image_count_provider
from ..class_freq_buffer import ClassFreqBufferMixin, ClassFreqSpec
from ..common import prior_bias
from ..layers import make_classifier
from ..output_layers import LongTailOutputLayers

__all__ = ["fed_loss_class_mask", "fed_loss_classes", "FedLossFastRCNNOutputLayers"]


def fed_loss_class_mask(
    gt_classes: torch.Tensor,
    num_classes: int,
    num_fed_classes: int,
    weight: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """
    The class subset S of the federated loss, as a (C,) boolean mask on the labels' device.

    The negatives are drawn without replacement with probability ``∝ weight`` by the Gumbel-top-k
    construction (the k largest ``log w_c + Gumbel noise`` are a draw without replacement, the
    same law as ``torch.multinomial(w, k)``), with fixed shapes: the number of negatives is
    never read back to the host.

    Args:
        gt_classes: (R,) labels of the sampled proposals; values >= ``num_classes`` (background)
            and < 0 are ignored.
        num_classes: C.
        num_fed_classes: |S| wanted.
        weight: (C,) sampling weights of the negatives (``image_count ** power``); classes of
            weight 0 are never drawn.
        generator: RNG for the draw, on the labels' device; None = torch's global RNG.
    """
    C = num_classes
    fg = (gt_classes >= 0) & (gt_classes < C)
    hits = torch.zeros(C, device=gt_classes.device).index_add_(
        0, gt_classes.clamp(0, C - 1), fg.float()
    )
    positive = hits > 0
    weight = weight.detach().to(device=gt_classes.device, dtype=torch.float32)
    drawable = (weight > 0) & ~positive
    uniform = torch.rand(C, device=gt_classes.device, generator=generator)
    gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20)))
    keys = torch.where(drawable, torch.log(weight.clamp(min=1e-30)) + gumbel, float("-inf"))
    k = min(num_fed_classes, C)
    top = keys.topk(k).indices
    num_neg = (num_fed_classes - positive.sum()).clamp(min=0)
    take = (torch.arange(k, device=keys.device) < num_neg) & drawable[top]
    negative = torch.zeros_like(positive).scatter_(0, top, take)
    return positive | negative


def fed_loss_classes(gt_classes, num_classes, num_fed_classes, weight, generator=None):
    """The classes of :func:`fed_loss_class_mask`, sorted (a (|S|,) long tensor; reads the host)."""
    mask = fed_loss_class_mask(gt_classes, num_classes, num_fed_classes, weight, generator)
    return mask.nonzero().squeeze(1)


class FedLossFastRCNNOutputLayers(ClassFreqBufferMixin, LongTailOutputLayers):
    """
    Fast R-CNN outputs with a C-way sigmoid classifier trained with the federated loss (see the
    module docstring). ``forward`` returns ``(logits (R, C), proposal_deltas)``; losses are
    ``loss_cls`` and ``loss_box_reg``; :meth:`inference` is the parent's.
    """

    class_freq_description = "federated-loss class image counts"

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        class_freq: ClassFreqSpec = None,
        num_fed_classes: int = 50,
        freq_weight_power: float = 0.5,
        prior_prob: float = 0.01,
        seed: int = -1,
        **kwargs,
    ):
        """
        Args:
            class_freq: (C,) training image counts per class, a callable returning them at the
                first training step, or None when they will come from a checkpoint.
            num_fed_classes, freq_weight_power, prior_prob: ``MODEL.PEERS.FED_LOSS.*``.
            seed: seeds the negatives' RNG (with the worker's rank): the config's ``SEED``;
                < 0 (detectron2's "random") takes this process's torch seed.
            kwargs: arguments of :class:`FastRCNNOutputLayers`.
        """
        super().__init__(input_shape, **kwargs)
        if num_fed_classes < 1:
            raise ValueError(
                f"MODEL.PEERS.FED_LOSS.NUM_CLASSES must be >= 1, got {num_fed_classes}"
            )
        # no background output
        self.cls_score = make_classifier(self.cls_score.in_features, self.num_classes)
        nn.init.constant_(self.cls_score.bias, prior_bias(prior_prob))
        self.num_fed_classes = num_fed_classes
        self.freq_weight_power = freq_weight_power
        # The negatives' own RNG, on the device of the draws, seeded before each draw from
        # (seed, worker rank, draws so far): ``draws`` is saved in checkpoints, so a resumed run
        # draws the classes it would have drawn, whatever else uses the global RNG. The host
        # keeps its own count (read from the buffer once, and again after a checkpoint load).
        self.seed = seed if seed >= 0 else torch.initial_seed()
        self.generator: Optional[torch.Generator] = None
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self._draws: Optional[int] = None
        self.init_class_freq(self.num_classes, class_freq)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        fed = cfg.MODEL.PEERS.FED_LOSS
        ret.update(
            {
                # computed from cfg.DATASETS.TRAIN at the first training step, unless a
                # checkpoint already provided them
                "class_freq": image_count_provider(cfg),
                "num_fed_classes": fed.NUM_CLASSES,
                "freq_weight_power": fed.FREQ_WEIGHT_POWER,
                "prior_prob": fed.PRIOR_PROB,
                "seed": cfg.SEED,
            }
        )
        return ret

    def sampling_weights(self) -> torch.Tensor:
        """(C,) ``image_count ** FREQ_WEIGHT_POWER`` (0 for classes with no image; computed
        once)."""
        return self.class_stat("sampling_weights", lambda n: n.pow(self.freq_weight_power))

    def class_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(R, C + 1): ``sigmoid(z_c)``, then ``prod_c (1 - sigmoid(z_c))``."""
        # log(1 - sigmoid(z)) = -softplus(z): the "no class" column without underflow for large C
        none = torch.exp(-F.softplus(logits).sum(dim=1, keepdim=True))
        return torch.cat([torch.sigmoid(logits), none], dim=1)

    def negatives_generator(self, device: torch.device) -> torch.Generator:
        """The negatives' RNG on ``device``, seeded for the next draw (see ``__init__``)."""
        if self._draws is None:
            self._draws = int(self.draws)
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device)
        key = ((self.seed * 1_000_003 + comm.get_rank()) * 1_000_033 + self._draws) % 2**63
        self.generator.manual_seed(key)
        self._draws += 1
        self.draws.fill_(self._draws)
        return self.generator

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._draws = None

    def classification_losses(self, logits, gt_classes, scalars):
        C = self.num_classes
        fg = (gt_classes >= 0) & (gt_classes < C)
        # one-hot rows by scatter (background and ignored rows stay zero): no boolean indexing
        target = torch.zeros_like(logits).scatter_(
            1, gt_classes.clamp(0, C - 1).unsqueeze(1), fg.unsqueeze(1).to(logits.dtype)
        )
        mask = fed_loss_class_mask(
            gt_classes, C, self.num_fed_classes, self.sampling_weights(),
            self.negatives_generator(gt_classes.device),
        )
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss_cls = (bce * mask.to(bce.dtype)).sum() / max(gt_classes.numel(), 1)

        scalars.put("fed_loss/num_classes", mask.sum())
        return {"loss_cls": loss_cls}
