"""
ROI heads that swap a peer method's box predictor into detectron2's StandardROIHeads; the box
head, box regression and mask head are unchanged. Select one with ``MODEL.ROI_HEADS.NAME``.
"""
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

from .balanced_softmax import BalancedSoftmaxFastRCNNOutputLayers
from .eqlv2 import EQLv2FastRCNNOutputLayers
from .fed_loss import FedLossFastRCNNOutputLayers
from .seesaw import SeesawFastRCNNOutputLayers

__all__ = ["FedLossROIHeads", "EQLv2ROIHeads", "SeesawROIHeads", "BalancedSoftmaxROIHeads"]


class _PeerROIHeads(StandardROIHeads):
    predictor_class = None  # the FastRCNNOutputLayers subclass built from the config

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = cls.predictor_class(cfg, ret["box_head"].output_shape)
        return ret


@ROI_HEADS_REGISTRY.register()
class FedLossROIHeads(_PeerROIHeads):
    """StandardROIHeads with the federated-loss predictor (``MODEL.PEERS.FED_LOSS.*``)."""

    predictor_class = FedLossFastRCNNOutputLayers


@ROI_HEADS_REGISTRY.register()
class EQLv2ROIHeads(_PeerROIHeads):
    """StandardROIHeads with the EQLv2 predictor (``MODEL.PEERS.EQLV2.*``)."""

    predictor_class = EQLv2FastRCNNOutputLayers


@ROI_HEADS_REGISTRY.register()
class SeesawROIHeads(_PeerROIHeads):
    """StandardROIHeads with the seesaw-loss predictor (``MODEL.PEERS.SEESAW.*``)."""

    predictor_class = SeesawFastRCNNOutputLayers


@ROI_HEADS_REGISTRY.register()
class BalancedSoftmaxROIHeads(_PeerROIHeads):
    """StandardROIHeads with the balanced-softmax predictor (``MODEL.PEERS.BALANCED_SOFTMAX.*``)."""

    predictor_class = BalancedSoftmaxFastRCNNOutputLayers
