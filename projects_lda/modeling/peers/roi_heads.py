"""
ROI heads that swap a peer method's box predictor into detectron2's StandardROIHeads; the box
head, box regression and mask head are unchanged. Select one with ``MODEL.ROI_HEADS.NAME``.
"""
from detectron2.modeling import ROI_HEADS_REGISTRY

from ..roi_heads import PredictorROIHeads

from .balanced_softmax import BalancedSoftmaxFastRCNNOutputLayers
from .eqlv2 import EQLv2FastRCNNOutputLayers
from .fed_loss import FedLossFastRCNNOutputLayers
from .seesaw import SeesawFastRCNNOutputLayers

__all__ = ["FedLossROIHeads", "EQLv2ROIHeads", "SeesawROIHeads", "BalancedSoftmaxROIHeads"]


@ROI_HEADS_REGISTRY.register()
class FedLossROIHeads(PredictorROIHeads):
    """StandardROIHeads with the federated-loss predictor (``MODEL.PEERS.FED_LOSS.*``)."""

    predictor_class = FedLossFastRCNNOutputLayers


@ROI_HEADS_REGISTRY.register()
class EQLv2ROIHeads(PredictorROIHeads):
    """StandardROIHeads with the EQLv2 predictor (``MODEL.PEERS.EQLV2.*``)."""

    predictor_class = EQLv2FastRCNNOutputLayers


@ROI_HEADS_REGISTRY.register()
class SeesawROIHeads(PredictorROIHeads):
    """StandardROIHeads with the seesaw-loss predictor (``MODEL.PEERS.SEESAW.*``)."""

    predictor_class = SeesawFastRCNNOutputLayers


@ROI_HEADS_REGISTRY.register()
class BalancedSoftmaxROIHeads(PredictorROIHeads):
    """StandardROIHeads with the balanced-softmax predictor (``MODEL.PEERS.BALANCED_SOFTMAX.*``)."""

    predictor_class = BalancedSoftmaxFastRCNNOutputLayers
