"""
The method: LDA's box predictor, its loss terms (:mod:`.lda_loss`), its importance weights and
balance factor (Eq. 5-6, :mod:`.balance`), the peer long-tail
predictors, and the ROI heads that carry them. Importing this package registers ``LDAROIHeads``
and the peer methods' ROI heads in detectron2's ``ROI_HEADS_REGISTRY``, and
``SelectedClassMaskHead`` in its ``ROI_MASK_HEAD_REGISTRY``.
"""
from .output_layers import LongTailOutputLayers
from .lda_fast_rcnn import LDAFastRCNNOutputLayers, LDALogits
from .roi_heads import LDAROIHeads, PredictorROIHeads
from .mask_head import SelectedClassMaskHead
from . import peers  # noqa: F401  (registers the peer methods' ROI heads)

__all__ = [
    "LongTailOutputLayers",
    "LDAFastRCNNOutputLayers",
    "LDALogits",
    "LDAROIHeads",
    "PredictorROIHeads",
    "SelectedClassMaskHead",
]
