"""ROI heads that swap a box predictor (LDA's, or a peer method's) into StandardROIHeads."""
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads

from .lda_fast_rcnn import LDAFastRCNNOutputLayers

__all__ = ["PredictorROIHeads", "LDAROIHeads"]


class PredictorROIHeads(StandardROIHeads):
    """
    :class:`StandardROIHeads` whose box predictor is ``predictor_class`` (a
    ``FastRCNNOutputLayers`` subclass built from the config); the box head, box regression and
    mask head are unchanged. Subclasses set ``predictor_class`` and register themselves.
    """

    predictor_class = None

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = cls.predictor_class(cfg, ret["box_head"].output_shape)
        return ret


@ROI_HEADS_REGISTRY.register()
class LDAROIHeads(PredictorROIHeads):
    """
    ROI heads with LDA's predictor (:class:`LDAFastRCNNOutputLayers`); select with
    ``MODEL.ROI_HEADS.NAME: "LDAROIHeads"``.
    """

    predictor_class = LDAFastRCNNOutputLayers
