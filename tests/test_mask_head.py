"""
projects_lda/modeling/mask_head.py: SelectedClassMaskHead gives detectron2's
MaskRCNNConvUpsampleHead's loss, gradients and masks while computing one mask channel per ROI;
a fixed seed, tiny inputs, an empty batch, the class-agnostic case.
"""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads.mask_head import MaskRCNNConvUpsampleHead, build_mask_head
from detectron2.structures import Boxes, Instances, BitMasks
from detectron2.utils.events import EventStorage

from projects_lda import get_project_cfg
from projects_lda.modeling.mask_head import (
    CPU_INFERENCE_CHUNK,
    SelectedClassMaskHead,
    selected_class_logits,
)

C, D, M = 7, 8, 14  # classes, channels, pooled size (masks of 2M)


def _heads(agnostic=False):
    cfg = get_project_cfg()
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", C, "MODEL.ROI_MASK_HEAD.CONV_DIM", D,
                         "MODEL.ROI_MASK_HEAD.NUM_CONV", 2,
                         "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK", agnostic,
                         "MODEL.ROI_MASK_HEAD.NAME", "SelectedClassMaskHead"])
    torch.manual_seed(0)
    ours = build_mask_head(cfg, ShapeSpec(channels=D, width=M, height=M))
    theirs = MaskRCNNConvUpsampleHead(cfg, ShapeSpec(channels=D, width=M, height=M))
    with torch.no_grad():  # a predictor far from its near-zero init, so the masks differ
        ours.predictor.weight.normal_(0, 1.0)
        ours.predictor.bias.normal_(0, 1.0)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _train_instances(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    inst = Instances((32, 32))
    boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0]]).repeat(n, 1) + torch.rand(n, 4, generator=g)
    inst.proposal_boxes = Boxes(boxes)
    inst.gt_classes = torch.randint(0, C, (n,), generator=g)
    inst.gt_masks = BitMasks(torch.rand(n, 32, 32, generator=g) > 0.5)
    return [inst]


def test_selected_class_logits_equal_the_convolutions_channel():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(D, C, 1)
    x = torch.randn(5, D, 3, 3, dtype=torch.float64)
    classes = torch.tensor([3, 0, 6, 3, 1])
    w, b = conv.weight.double(), conv.bias.double()
    full = torch.nn.functional.conv2d(x, w, b)
    torch.testing.assert_close(selected_class_logits(x, w, b, classes),
                               full[torch.arange(5), classes][:, None], rtol=0, atol=1e-12)
    assert selected_class_logits(x[:0], w, None, classes[:0]).shape == (0, 1, 3, 3)


@pytest.mark.parametrize("n", [5, 0], ids=["rois", "empty"])
def test_training_loss_and_gradients_match_detectron2s_head(n):
    ours, theirs = _heads()
    x = torch.randn(n, D, M, M, generator=torch.Generator().manual_seed(1))
    losses = []
    for head in (ours, theirs):
        head.train()
        with EventStorage():
            loss = head(x, _train_instances(n))["loss_mask"]
        loss.backward()
        losses.append(loss)
    assert torch.isfinite(losses[0])
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-6)
    if n == 0:
        assert losses[0].item() == 0.0
    grads = {k: p.grad for k, p in theirs.named_parameters()}
    for k, p in ours.named_parameters():
        assert p.grad is not None, k
        torch.testing.assert_close(p.grad, grads[k], rtol=0, atol=1e-6, msg=k)


def test_inference_masks_match_detectron2s_head():
    ours, theirs = _heads()
    x = torch.randn(6, D, M, M, generator=torch.Generator().manual_seed(2))
    masks = []
    for head in (ours, theirs):
        inst = Instances((32, 32))
        inst.pred_boxes = Boxes(torch.tensor([[1.0, 1.0, 30.0, 30.0]]).repeat(6, 1))
        inst.pred_classes = torch.tensor([0, 6, 2, 2, 5, 1])
        with torch.no_grad():
            masks.append(head.eval()(x, [inst])[0].pred_masks)
    assert masks[0].shape == (6, 1, 2 * M, 2 * M)
    torch.testing.assert_close(masks[0], masks[1], rtol=0, atol=1e-6)
    # the channels differ between classes: choosing the wrong one would have shown
    assert (masks[1][2] - masks[1][1]).abs().max() > 0.01


def test_cpu_inference_in_chunks_gives_the_masks_of_one_pass():
    ours, theirs = _heads()
    n = 2 * CPU_INFERENCE_CHUNK + 5  # two full chunks and a partial one
    x = torch.randn(n, D, M, M, generator=torch.Generator().manual_seed(4))
    classes = torch.randint(0, C, (n,), generator=torch.Generator().manual_seed(5))
    masks = []
    for head in (ours, theirs):
        inst = Instances((32, 32))
        inst.pred_boxes = Boxes(torch.tensor([[1.0, 1.0, 30.0, 30.0]]).repeat(n, 1))
        inst.pred_classes = classes
        with torch.no_grad():
            masks.append(head.eval()(x, [inst])[0].pred_masks)
    assert masks[0].shape == (n, 1, 2 * M, 2 * M)
    torch.testing.assert_close(masks[0], masks[1], rtol=0, atol=1e-6)


def test_traced_head_takes_any_number_of_rois():
    class Logits(torch.nn.Module):  # tensors in and out, as the export traces them
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, x, classes):
            return self.head.mask_logits(x, classes)

    logits = Logits(_heads()[0]).eval()

    def inputs(n):
        g = torch.Generator().manual_seed(n)
        return torch.randn(n, D, M, M, generator=g), torch.randint(0, C, (n,), generator=g)

    with torch.no_grad():
        traced = torch.jit.trace(logits, inputs(CPU_INFERENCE_CHUNK + 8))
        many = inputs(3 * CPU_INFERENCE_CHUNK + 1)  # more chunks than the traced input had
        out = traced(*many)
        assert out.shape == (3 * CPU_INFERENCE_CHUNK + 1, 1, 2 * M, 2 * M)
        torch.testing.assert_close(out, logits(*many), rtol=0, atol=1e-5)


def test_class_agnostic_is_the_parent_head():
    ours, theirs = _heads(agnostic=True)
    assert isinstance(ours, SelectedClassMaskHead) and ours.predictor.out_channels == 1
    x = torch.randn(4, D, M, M, generator=torch.Generator().manual_seed(3))
    with EventStorage():
        a = ours.train()(x, _train_instances(4))["loss_mask"]
        b = theirs.train()(x, _train_instances(4))["loss_mask"]
    assert a.item() == b.item()
