"""
LDA: Long-tailed Distribution Adaptation (ACM MM 2021) for detectron2.

Importing this package registers ``LDAROIHeads`` in detectron2's ``ROI_HEADS_REGISTRY`` and the
embedded long-tailed LVIS-format dataset (plus any datasets named in ``LDA_EXTRA_DATASETS``).
"""
from .config import add_lda_config, get_project_cfg
from .lda_fast_rcnn import LDAFastRCNNOutputLayers, LDALogits
from .roi_heads import LDAROIHeads
from .class_freq import class_frequencies, class_frequencies_from_datasets
from . import data  # noqa: F401  (registers datasets)
from .peers import add_peers_config  # registers the peer methods' ROI heads

__all__ = [
    "add_lda_config",
    "add_peers_config",
    "get_project_cfg",
    "LDAFastRCNNOutputLayers",
    "LDALogits",
    "LDAROIHeads",
    "class_frequencies",
    "class_frequencies_from_datasets",
]
