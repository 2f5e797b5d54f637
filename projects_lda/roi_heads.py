"""ROI heads that swap the LDA box predictor into detectron2's StandardROIHeads."""
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

from .lda_fast_rcnn import LDAFastRCNNOutputLayers

__all__ = ["LDAROIHeads"]


@ROI_HEADS_REGISTRY.register()
class LDAROIHeads(StandardROIHeads):
    """
    :class:`StandardROIHeads` whose box predictor is :class:`LDAFastRCNNOutputLayers`; the box
    head, box regression and mask head are unchanged. Select with
    ``MODEL.ROI_HEADS.NAME: "LDAROIHeads"``.
    """

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = LDAFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret
