"""
A Mask R-CNN mask head that computes only the mask channel that is read.

detectron2's ``MaskRCNNConvUpsampleHead`` ends in a 1x1 convolution to one channel per class, but
its loss (``mask_rcnn_loss``) reads only the ground-truth class's channel of each ROI and its
inference (``mask_rcnn_inference``) only the predicted class's. At hundreds of classes that
convolution is the head's largest cost: on the many-class embedded configs (300 classes, 64
channels, 28x28) it was a large share of a CPU training step and most of inference with 300
detections an image (docs/performance.md has the figures). :class:`SelectedClassMaskHead` has
the same modules and weights (checkpoints load either way) and gives the same losses, gradients
and masks (to floating-point rounding), computing the one channel per ROI from the selected
class's row of the predictor's weight. On the CPU its inference runs the ROIs in chunks of
:data:`CPU_INFERENCE_CHUNK`: the 28x28 layers are memory-bound there, and a chunk's activations
stay in cache (docs/performance.md has the measurement).
"""
import torch

from detectron2.layers import cat
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
)

__all__ = ["SelectedClassMaskHead", "selected_class_logits", "CPU_INFERENCE_CHUNK"]

# ROIs per pass of CPU inference: 32 ROIs' 64-channel 28x28 activations are 6 MB, within a
# core's share of cache, where 800 ROIs' are 160 MB a layer (docs/performance.md measures it)
CPU_INFERENCE_CHUNK = 32


def selected_class_logits(features, weight, bias, classes):
    """
    The logits of a 1x1 convolution ``(weight, bias)`` over ``features``, for one output channel
    per ROI: ``classes[i]``'s.

    Args:
        features: (N, D, M, M) the ROIs' features.
        weight: (C, D, 1, 1) the convolution's weight; bias: (C,) or None.
        classes: (N,) int64, the output channel of each ROI.
    Returns:
        (N, 1, M, M): what ``conv(features)[arange(N), classes]`` would be, unsqueezed.
    """
    w = weight.flatten(1)[classes]  # (N, D)
    logits = torch.einsum("ndhw,nd->nhw", features, w)
    if bias is not None:
        logits = logits + bias[classes][:, None, None]
    return logits[:, None]


@ROI_MASK_HEAD_REGISTRY.register()
class SelectedClassMaskHead(MaskRCNNConvUpsampleHead):
    """
    ``MaskRCNNConvUpsampleHead`` (same config keys, modules and weights) whose class-specific
    predictor computes, for each ROI, only the channel that is read: the ground-truth class's in
    training, the predicted class's at inference. The (N, 1, M, M) logits go to detectron2's
    ``mask_rcnn_loss`` / ``mask_rcnn_inference``, which read channel 0 of a one-channel
    prediction for every ROI. With ``CLS_AGNOSTIC_MASK`` it is the parent head.
    """

    def _selected_logits(self, x, classes):
        for layer in self.children():  # every layer but the predictor, in order
            if layer is not self.predictor:
                x = layer(x)
        return selected_class_logits(x, self.predictor.weight, self.predictor.bias, classes)

    def mask_logits(self, x, classes, chunk=CPU_INFERENCE_CHUNK):
        """(N, 1, 2M, 2M) mask logits of the ROI features ``x`` (N, D, M, M), each ROI's for
        its class in ``classes`` (N,); ``chunk``: ROIs per pass of CPU inference (0: one)."""
        # one pass when training (autograd keeps every activation anyway), on a GPU, and when
        # traced for export (a traced loop would fix the number of ROIs)
        if (self.training or x.device.type != "cpu" or torch.jit.is_tracing()
                or not 0 < chunk < len(x)):
            return self._selected_logits(x, classes)
        return cat([self._selected_logits(x[i:i + chunk], classes[i:i + chunk])
                    for i in range(0, len(x), chunk)])

    def forward(self, x, instances):
        if self.predictor.out_channels == 1:  # class-agnostic: one channel is all there is
            return super().forward(x, instances)
        field = "gt_classes" if self.training else "pred_classes"
        classes = cat([i.get(field) for i in instances]) if instances else x.new_zeros(
            (0,), dtype=torch.int64)
        logits = self.mask_logits(x, classes)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(logits, instances, self.vis_period)
                    * self.loss_weight}
        mask_rcnn_inference(logits, instances)
        return instances
