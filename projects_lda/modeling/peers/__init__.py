"""
Peer long-tail methods as detectron2 box predictors, to compare LDA against under the same
detector, schedule and data:

=================  ==========================  ======================================
method             ``MODEL.ROI_HEADS.NAME``    config keys
=================  ==========================  ======================================
federated loss     ``FedLossROIHeads``         ``MODEL.PEERS.FED_LOSS.*``
EQLv2              ``EQLv2ROIHeads``           ``MODEL.PEERS.EQLV2.*``
Seesaw loss        ``SeesawROIHeads``          ``MODEL.PEERS.SEESAW.*``
balanced softmax   ``BalancedSoftmaxROIHeads`` ``MODEL.PEERS.BALANCED_SOFTMAX.*``
=================  ==========================  ======================================

Importing this package registers the four ROI heads in ``ROI_HEADS_REGISTRY``; call
:func:`add_peers_config` on the config before merging a peer config file. Each module's
docstring cites its paper and gives the equations followed and the choices made.
"""
from .config import add_peers_config
from .fed_loss import FedLossFastRCNNOutputLayers, fed_loss_classes
from .eqlv2 import EQLv2FastRCNNOutputLayers
from .seesaw import SeesawFastRCNNOutputLayers
from .balanced_softmax import BalancedSoftmaxFastRCNNOutputLayers, balanced_logit_adjustment
from .roi_heads import (
    BalancedSoftmaxROIHeads,
    EQLv2ROIHeads,
    FedLossROIHeads,
    SeesawROIHeads,
)

__all__ = [
    "add_peers_config",
    "FedLossFastRCNNOutputLayers",
    "fed_loss_classes",
    "EQLv2FastRCNNOutputLayers",
    "SeesawFastRCNNOutputLayers",
    "BalancedSoftmaxFastRCNNOutputLayers",
    "balanced_logit_adjustment",
    "FedLossROIHeads",
    "EQLv2ROIHeads",
    "SeesawROIHeads",
    "BalancedSoftmaxROIHeads",
]
