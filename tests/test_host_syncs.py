"""
Host synchronisations of a training step of each box predictor, counted on the CPU with
torch.profiler (projects_lda/benchmark/host_syncs.py): LDA and the peers may cost at most two more
than detectron2's FastRCNNOutputLayers (tests/test_cuda.py checks the same on a GPU with
torch.cuda.set_sync_debug_mode).
"""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from projects_lda import get_project_cfg
from projects_lda.benchmark.lvis_rehearsal import METHODS as CONFIGS  # method -> LVIS config
from projects_lda.benchmark.host_syncs import count_host_syncs, predictor_step, profile_step

from conftest import ROOT

C, D = 40, 32


def build_predictor(method):
    cfg = get_project_cfg()
    cfg.merge_from_file(str(ROOT / "configs/LVISv1" / CONFIGS[method]))
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", str(C), "MODEL.PEERS.FED_LOSS.NUM_CLASSES",
                         "8", "SEED", "0"])
    torch.manual_seed(0)
    if method == "baseline":
        predictor = FastRCNNOutputLayers(cfg, ShapeSpec(channels=D))
    else:
        heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)
        predictor = heads.predictor_class(cfg, ShapeSpec(channels=D))
    if hasattr(predictor, "set_class_freq"):
        predictor.set_class_freq(torch.arange(1.0, C + 1) ** 2)  # long-tailed, none empty
    return predictor.train()


def batch(seed, num_images=2, per_image=64, num_fg=16):
    """Features and sampled proposals: ``num_fg`` foreground rows of random classes per image."""
    g = torch.Generator().manual_seed(seed)
    proposals = []
    for _ in range(num_images):
        xy = torch.rand(per_image, 2, generator=g) * 200
        boxes = torch.cat([xy, xy + 10 + torch.rand(per_image, 2, generator=g) * 50], dim=1)
        inst = Instances((300, 300))
        inst.proposal_boxes = Boxes(boxes)
        inst.gt_boxes = Boxes(boxes + torch.randn(per_image, 4, generator=g))
        fg = torch.randint(0, C, (num_fg,), generator=g)
        inst.gt_classes = torch.cat([fg, torch.full((per_image - num_fg,), C)])
        proposals.append(inst)
    return torch.randn(num_images * per_image, D, generator=g), proposals


def syncs(method):
    """Sync counts of a predictor's second and third steps (the first computes class statistics),
    on batches with different numbers of foreground rows and classes."""
    predictor = build_predictor(method)
    counts = []
    with EventStorage():
        predictor_step(predictor, *batch(0))
        for seed, num_fg in [(1, 16), (2, 5)]:
            _, count = count_host_syncs(predictor_step, predictor, *batch(seed, num_fg=num_fg))
            counts.append(sum(count.values()))
    return counts


@pytest.fixture(scope="module")
def baseline_syncs():
    counts = syncs("baseline")
    assert counts[0] >= 3  # detectron2's own reads (nonzero, scalars): the count sees them
    return counts[0]


@pytest.mark.parametrize("method", [m for m in CONFIGS if m != "baseline"])
def test_a_training_step_synchronises_at_most_twice_more_than_the_baseline(method, baseline_syncs):
    counts = syncs(method)
    assert counts[0] == counts[1], "the count depends on the batch: something reads its content"
    assert counts[0] <= baseline_syncs + 2, (method, counts[0], baseline_syncs)


def test_profile_step_counts_dispatched_ops_and_syncs():
    x = torch.zeros(4)

    def fn():
        for _ in range(5):
            x.add_(1)  # one aten op each; nothing nested in another aten call is counted
        return x.sum().item()  # sum + item; item's _local_scalar_dense is nested, not an op

    prof = profile_step(fn, top=2)
    assert prof["ops"] == 7
    assert prof["top"] == [("aten::add_", 5), ("aten::sum", 1)]
    assert prof["syncs"] == {"aten::_local_scalar_dense": 1}
    if not torch.cuda.is_available():
        assert prof["kernels"] == 0 and prof["device_ms"] == 0.0
