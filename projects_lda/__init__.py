"""
LDA: Long-tailed Distribution Adaptation (ACM MM 2021) for detectron2.

Layout (docs/design.md, "Layers"): :mod:`projects_lda.modeling` is the method (LDA's box
predictor, its losses, the peer methods, the ROI heads), :mod:`projects_lda.data` a user's
datasets and class statistics, :mod:`projects_lda.worlds` the datasets the project generates.

Importing this package registers ``LDAROIHeads`` and the peer methods' ROI heads in detectron2's
``ROI_HEADS_REGISTRY``, the generated datasets (``lvis_embedded_*``) and any datasets named in
``LDA_EXTRA_DATASETS``.
"""
from .config import add_lda_config, add_project_config, get_project_cfg
from .modeling import LDAFastRCNNOutputLayers, LDALogits, LDAROIHeads  # registers the ROI heads
from .modeling.peers import add_peers_config
from .data.class_freq import class_frequencies, class_frequencies_from_datasets
from . import data  # noqa: F401  (registers the datasets of LDA_EXTRA_DATASETS)
from .worlds import datasets as _worlds  # noqa: F401  (registers lvis_embedded_*)

__all__ = [
    "add_lda_config",
    "add_project_config",
    "add_peers_config",
    "get_project_cfg",
    "LDAFastRCNNOutputLayers",
    "LDALogits",
    "LDAROIHeads",
    "class_frequencies",
    "class_frequencies_from_datasets",
]
