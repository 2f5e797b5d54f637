"""
The peer long-tail box predictors (federated loss, EQLv2, Seesaw, balanced softmax) on tiny
hand-made inputs, with expected values computed by hand here; their statistics summed over two
gloo workers; their configs; and a 2-iteration training of each on the tiny dataset.
"""
import json
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import (
    assert_finite_and_every_parameter_gets_a_gradient,
    make_proposals,
    run_gloo_workers,
    run_losses,
)

from detectron2.data import DatasetCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform

from projects_lda import LDAROIHeads, get_project_cfg
from projects_lda.data import register_lvis_format
from projects_lda.modeling.peers import (
    BalancedSoftmaxFastRCNNOutputLayers,
    BalancedSoftmaxROIHeads,
    EQLv2FastRCNNOutputLayers,
    EQLv2ROIHeads,
    FedLossFastRCNNOutputLayers,
    FedLossROIHeads,
    SeesawFastRCNNOutputLayers,
    SeesawROIHeads,
    balanced_logit_adjustment,
    fed_loss_classes,
)
from projects_lda.modeling.layers import NormedLinear
from projects_lda.modeling.peers.seesaw import seesaw_factors

import train_net  # noqa: E402  (the repository root is put on sys.path by conftest.py)

ROOT = Path(__file__).resolve().parents[1]
LN2, LN3 = math.log(2.0), math.log(3.0)


def softplus(x):  # log(1 + e^x): BCE(z, 0) = softplus(z), BCE(z, 1) = softplus(-z)
    return math.log1p(math.exp(x))


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- helpers
PREDICTORS = {
    "fedloss": FedLossFastRCNNOutputLayers,
    "eqlv2": EQLv2FastRCNNOutputLayers,
    "seesaw": SeesawFastRCNNOutputLayers,
    "balanced_softmax": BalancedSoftmaxFastRCNNOutputLayers,
}
NEEDS_FREQ = ("fedloss", "balanced_softmax")


def make_predictor(kind, num_classes=3, **kwargs):
    if kind in NEEDS_FREQ:
        kwargs.setdefault("class_freq", torch.arange(1.0, num_classes + 1))
    return PREDICTORS[kind](
        ShapeSpec(channels=8),
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        num_classes=num_classes,
        test_score_thresh=0.0,
        test_topk_per_image=100,
        **kwargs,
    )


def set_logits(predictor, logits):
    """Zero weights: every proposal gets ``logits`` (the classifier's biases), zero deltas."""
    with torch.no_grad():
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor(logits, dtype=torch.float32))
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()


# --------------------------------------------------------------------------- federated loss
def test_fed_loss_class_set_positives_plus_the_only_drawable_negatives():
    # classes 1 and 3 have no training image: only 2 and 4 can be drawn as negatives
    weight = torch.tensor([4.0, 0.0, 9.0, 0.0, 16.0]).sqrt()
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        got = fed_loss_classes(torch.tensor([0, 0, 5]), 5, 3, weight, generator=g)
        assert sorted(got.tolist()) == [0, 2, 4]
    # more positive classes than |S|: S is exactly the positives
    got = fed_loss_classes(torch.tensor([3, 1, 0, 5]), 5, 2, weight)
    assert got.tolist() == [0, 1, 3]
    # |S| beyond the drawable classes: all of them, no error
    got = fed_loss_classes(torch.tensor([0]), 5, 50, weight)
    assert sorted(got.tolist()) == [0, 2, 4]


def test_fed_loss_negatives_drawn_proportionally_to_sqrt_image_count_from_the_generator():
    # positive class 0; negatives 1 and 2 with image counts 1 and 4: weights 1 and 2
    weight = torch.tensor([1.0, 1.0, 4.0]).pow(0.5)
    rng_before = torch.get_rng_state()
    g = torch.Generator().manual_seed(123)
    draws = [fed_loss_classes(torch.tensor([0]), 3, 2, weight, generator=g)[1].item()
             for _ in range(3000)]
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG was not used
    assert sum(d == 2 for d in draws) / 3000 == pytest.approx(2 / 3, abs=0.03)
    assert set(draws) == {1, 2}
    g2 = torch.Generator().manual_seed(123)
    again = [fed_loss_classes(torch.tensor([0]), 3, 2, weight, generator=g2)[1].item()
             for _ in range(3000)]
    assert again == draws


def test_fed_loss_by_hand():
    predictor = make_predictor(
        "fedloss", num_classes=5, class_freq=torch.tensor([4.0, 0.0, 9.0, 0.0, 16.0]),
        num_fed_classes=3,
    )
    predictor.generator = torch.Generator().manual_seed(0)
    z = [0.5, -1.0, -2.0, 1.0, 0.0]
    set_logits(predictor, z)
    losses = run_losses(predictor, [0, 0, 5])  # two proposals of class 0, one background
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    # S = {0, 2, 4}: class 0 positive for 2 proposals, negative for the background one;
    # classes 2 and 4 negative for all 3; classes 1 and 3 (logit 1.0) are not in the loss
    expected = (
        2 * softplus(-z[0]) + softplus(z[0]) + 3 * softplus(z[2]) + 3 * softplus(z[4])
    ) / 3
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-6)
    assert losses["loss_box_reg"].item() == pytest.approx(0.0, abs=1e-7)


def test_fed_loss_starts_from_the_prior_probability():
    predictor = make_predictor("fedloss", num_classes=4, prior_prob=0.01)
    assert torch.allclose(predictor.cls_score.bias, torch.full((4,), math.log(0.01 / 0.99)))
    assert predictor.cls_score.out_features == 4  # no background logit


# --------------------------------------------------------------------------- EQLv2
EQL_Z = [0.0, LN3, 0.0]  # C = 2: p = (0.5, 0.75), background logit 0 (p_bg = 0.5)


def _f(g):  # the paper's mapping with gamma = 12, mu = 0.8
    return 1 / (1 + math.exp(-12 * (g - 0.8)))


def test_eqlv2_weights_after_one_accumulation_step_by_hand():
    predictor = make_predictor("eqlv2", num_classes=2)
    set_logits(predictor, EQL_Z)
    gt = [0, 0, 1, 2]  # two of class 0, one of class 1, one background
    q, r = predictor.class_weights()
    assert q.tolist() == [1.0, 1.0] and r.tolist() == [1.0, 1.0]  # no statistics yet

    losses = run_losses(predictor, gt)
    # step 1, all weights 1: per proposal, the BCE of the 3 sigmoids
    # class-0 proposal: ln2 + ln4 + ln2; class-1 one: ln2 + ln(4/3) + ln2; background: ln2+ln4+ln2
    expected1 = (2 * 4 * LN2 + 2 * LN2 + math.log(4 / 3) + 4 * LN2) / 4
    assert losses["loss_cls"].item() == pytest.approx(expected1, rel=1e-6)
    # positive gradients |p - 1| on positives, negative gradients p on negatives
    assert predictor.pos_grad.tolist() == pytest.approx([2 * 0.5, 1 * 0.25])
    assert predictor.neg_grad.tolist() == pytest.approx([2 * 0.5, 3 * 0.75])
    assert int(predictor.grad_steps) == 1
    g0, g1 = 1.0, 0.25 / 2.25
    r0, r1 = _f(g0), _f(g1)
    q0, q1 = 1 + 4 * (1 - r0), 1 + 4 * (1 - r1)
    q, r = predictor.class_weights()
    assert q.tolist() == pytest.approx([q0, q1], rel=1e-6)
    assert r.tolist() == pytest.approx([r0, r1], rel=1e-6)
    assert r1 < 1e-3 < 0.9 < r0  # class 1 (few positive gradients): negatives damped

    losses = run_losses(predictor, gt)  # step 2 uses the weights above
    expected2 = (
        2 * (q0 * LN2 + r1 * math.log(4) + LN2)
        + (r0 * LN2 + q1 * math.log(4 / 3) + LN2)
        + (r0 * LN2 + r1 * math.log(4) + LN2)
    ) / 4
    assert losses["loss_cls"].item() == pytest.approx(expected2, rel=1e-6)
    # the accumulated statistics are those of the reweighted gradients
    assert predictor.pos_grad.tolist() == pytest.approx([1.0 + 1.0 * q0, 0.25 + 0.25 * q1])
    assert predictor.neg_grad.tolist() == pytest.approx([1.0 + 1.0 * r0, 2.25 + 2.25 * r1])


def test_eqlv2_probabilities_use_the_background_sigmoid():
    predictor = make_predictor("eqlv2", num_classes=3).eval()
    set_logits(predictor, [0.0, LN3, -LN3, -LN3])  # p = 0.5, 0.75, 0.25; p_bg = 0.25
    probs = predictor.predict_probs(predictor(torch.rand(2, 8)), make_proposals([0, 1]))
    expected = torch.tensor([0.5 * 0.75, 0.75 * 0.75, 0.25 * 0.75, 0.25])
    assert torch.allclose(probs[0], expected.expand(2, -1), atol=1e-6)


# --------------------------------------------------------------------------- Seesaw
def test_seesaw_factors_three_classes_by_hand():
    # N = (100, 10, 1); logits (0, ln2, ln4): softmax s = (1, 2, 4) / 7
    n = torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)
    z = torch.tensor([[0.0, LN2, math.log(4)]] * 3)
    S = seesaw_factors(z, torch.tensor([0, 1, 2]), n, p=0.8, q=2.0, eps=0.01)
    expected = torch.tensor([
        # class 0 (head): M = (N_j/N_0)^0.8 for the rarer 1, 2; C = (s_j/s_0)^2 = 2^2, 4^2
        [1.0, 0.1 ** 0.8 * 4, 0.01 ** 0.8 * 16],
        # class 1: M_10 = 1 (class 0 more frequent), M_12 = 0.1^0.8; C_10 = 1 (s_0 < s_1),
        # C_12 = (4/2)^2
        [1.0, 1.0, 0.1 ** 0.8 * 4],
        # class 2 (rarest, most probable): M = 1 and C = 1 everywhere
        [1.0, 1.0, 1.0],
    ])
    assert torch.allclose(S, expected, rtol=1e-5)
    # only mitigation (q = 0) or only compensation (p = 0)
    S_m = seesaw_factors(z[:1], torch.tensor([0]), n, p=0.8, q=0.0, eps=0.01)
    assert S_m[0].tolist() == pytest.approx([1.0, 0.1 ** 0.8, 0.01 ** 0.8], rel=1e-5)
    S_c = seesaw_factors(z[:1], torch.tensor([0]), n, p=0.0, q=2.0, eps=0.01)
    assert S_c[0].tolist() == pytest.approx([1.0, 4.0, 16.0], rel=1e-5)
    # compensation divides by max(s_i, eps): s = (1e-4, ~1) -> C_01 = (1/0.01)^2, not (1e4)^2
    z2 = torch.tensor([[0.0, math.log(1e4 - 1)]])
    S_eps = seesaw_factors(z2, torch.tensor([0]), torch.ones(2), p=0.0, q=2.0, eps=0.01)
    assert S_eps[0, 1].item() == pytest.approx((0.9999 / 0.01) ** 2, rel=1e-4)


def test_seesaw_loss_by_hand_with_online_counts():
    predictor = make_predictor("seesaw", num_classes=3, normed_linear=False)
    set_logits(predictor, [0.0, LN2, math.log(4), 0.0, 0.0])  # classes, then [fg, bg]
    predictor.cum_samples.copy_(torch.tensor([99.0, 9.0, 0.0], dtype=torch.float64))
    losses = run_losses(predictor, [0, 1, 2, 3])
    assert set(losses) == {"loss_cls_classes", "loss_cls_objectness", "loss_box_reg"}
    # the batch's labels are counted first: N = (100, 10, 1)
    assert predictor.cum_samples.tolist() == [100.0, 10.0, 1.0]
    # sigma_hat_i = e^{z_i} / (sum_{j != i} S_ij e^{z_j} + e^{z_i}), e^z = (1, 2, 4)
    l0 = math.log(1 + 2 * (0.1 ** 0.8 * 4) + 4 * (0.01 ** 0.8 * 16))
    l1 = math.log((1 + 2 + 4 * (0.1 ** 0.8 * 4)) / 2)
    l2 = math.log(7 / 4)
    assert losses["loss_cls_classes"].item() == pytest.approx((l0 + l1 + l2) / 4, rel=1e-6)
    # objectness logits (0, 0) for 4 proposals: 4 ln2 / 4
    assert losses["loss_cls_objectness"].item() == pytest.approx(LN2, rel=1e-6)


def test_seesaw_probabilities_are_class_softmax_times_objectness():
    predictor = make_predictor("seesaw", num_classes=3, normed_linear=False).eval()
    set_logits(predictor, [0.0, LN2, math.log(4), LN3, 0.0])  # P(fg) = 0.75
    probs = predictor.predict_probs(predictor(torch.rand(2, 8)), make_proposals([0, 1]))
    expected = torch.tensor([0.75 / 7, 1.5 / 7, 3 / 7, 0.25])
    assert torch.allclose(probs[0], expected.expand(2, -1), atol=1e-6)


def test_normed_linear_is_temperature_times_cosine_plus_bias():
    layer = NormedLinear(2, 1, temperature=20.0)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
        layer.bias.fill_(0.5)
    out = layer(torch.tensor([[2.0, 0.0], [0.0, -7.0]]))
    # cos = 3/5 and -4/5
    assert out[:, 0].tolist() == pytest.approx([20 * 0.6 + 0.5, -20 * 0.8 + 0.5], rel=1e-5)


# --------------------------------------------------------------------------- balanced softmax
def test_balanced_softmax_adjusted_logits_by_hand():
    # n = (6, 3, 1): C n_j / N = 3 * (0.6, 0.3, 0.1) = (1.8, 0.9, 0.3); background 0
    adjust = balanced_logit_adjustment(torch.tensor([6.0, 3.0, 1.0]))
    assert adjust.tolist() == pytest.approx([math.log(1.8), math.log(0.9), math.log(0.3), 0.0])
    # a class without training sample takes the smallest positive count: n' = (5, 2, 2)
    adjust = balanced_logit_adjustment(torch.tensor([5.0, 0.0, 2.0]))
    assert adjust.tolist() == pytest.approx([math.log(15 / 9), math.log(6 / 9),
                                             math.log(6 / 9), 0.0])
    # balanced frequencies: no adjustment, the baseline's loss
    assert balanced_logit_adjustment(torch.full((4,), 7.0)).abs().max().item() < 1e-6

    predictor = make_predictor("balanced_softmax", class_freq=torch.tensor([6.0, 3.0, 1.0]))
    set_logits(predictor, [0.0, 0.0, 0.0, 0.0])
    losses = run_losses(predictor, [0, 2, 3])
    # softmax of the adjusted logits: (1.8, 0.9, 0.3, 1) / 4
    expected = (-math.log(1.8 / 4) - math.log(0.3 / 4) - math.log(1 / 4)) / 3
    assert losses["loss_cls"].item() == pytest.approx(expected, rel=1e-6)


def test_balanced_softmax_uses_plain_logits_at_test_time():
    predictor = make_predictor("balanced_softmax", class_freq=torch.tensor([6.0, 3.0, 1.0]))
    predictor.eval()
    set_logits(predictor, [0.0, LN2, math.log(4), 0.0])
    probs = predictor.predict_probs(predictor(torch.rand(2, 8)), make_proposals([0, 1]))
    assert torch.allclose(probs[0], torch.tensor([1.0, 2.0, 4.0, 1.0]).expand(2, -1) / 8)


# --------------------------------------------------------------------------- all predictors
@pytest.mark.parametrize("kind", sorted(PREDICTORS))
def test_inference_keeps_the_parent_contract_without_training_statistics(kind):
    provider_calls = []

    def provider():
        provider_calls.append(1)
        return torch.ones(3)

    kwargs = {"class_freq": provider} if kind in NEEDS_FREQ else {}
    predictor = make_predictor(kind, **kwargs).eval()
    proposals = make_proposals([0, 1, 2, 3])
    for p in proposals:
        p.remove("gt_boxes")
        p.remove("gt_classes")
    predictions = predictor(torch.rand(4, 8))
    probs = predictor.predict_probs(predictions, proposals)
    assert len(probs) == 1 and probs[0].shape == (4, 3 + 1)  # C classes, background last
    assert bool(((probs[0] >= 0) & (probs[0] <= 1)).all())
    instances, kept = predictor.inference(predictions, proposals)
    assert len(instances) == 1 and len(kept) == 1
    out = instances[0]
    assert out.has("pred_boxes") and out.has("scores") and out.has("pred_classes")
    assert len(out) > 0 and bool((out.pred_classes < 3).all())
    assert provider_calls == []  # --eval-only never needs the training set


@pytest.mark.parametrize("gt_classes", [[], [3, 3, 3]], ids=["no_proposals", "no_foreground"])
@pytest.mark.parametrize("kind", sorted(PREDICTORS))
def test_empty_batches_finite_and_every_parameter_gets_a_gradient(kind, gt_classes):
    predictor = make_predictor(kind)
    assert_finite_and_every_parameter_gets_a_gradient(predictor, run_losses(predictor, gt_classes))


@pytest.mark.parametrize("kind", sorted(PREDICTORS))
def test_checkpoint_round_trip_keeps_the_training_statistics(kind):
    trained = make_predictor(kind)
    for seed in range(2):
        run_losses(trained, [0, 1, 2, 3], seed=seed)
    restored = make_predictor(kind, **({"class_freq": None} if kind in NEEDS_FREQ else {}))
    restored.load_state_dict(trained.state_dict())
    for name, buf in trained.named_buffers():
        assert torch.equal(dict(restored.named_buffers())[name], buf), name
    if kind in NEEDS_FREQ:
        assert bool(restored.class_freq_ready)
        assert torch.equal(restored.get_class_freq(), torch.tensor([1.0, 2.0, 3.0]))
    if kind == "eqlv2":
        assert int(restored.grad_steps) == 2
    if kind == "seesaw":
        assert restored.cum_samples.tolist() == [2.0, 2.0, 2.0]


def test_frequencies_missing_or_wrong():
    for kind in NEEDS_FREQ:
        with pytest.raises(RuntimeError, match="not set"):
            run_losses(make_predictor(kind, class_freq=None), [0, 1])
        with pytest.raises(ValueError, match="NUM_CLASSES=3"):
            make_predictor(kind, class_freq=torch.ones(5))
        with pytest.raises(ValueError, match="all zero"):
            make_predictor(kind, class_freq=torch.zeros(3))


# --------------------------------------------------------------------------- two gloo workers
# per rank: the sampled proposals' classes (C = 2; 2 is background)
GLOO_GT = {0: [0, 0, 2], 1: [1, 2]}


def _gloo_worker(rank):
    eql = make_predictor("eqlv2", num_classes=2)
    set_logits(eql, EQL_Z)
    seesaw = make_predictor("seesaw", num_classes=2)
    run_losses(eql, GLOO_GT[rank])
    run_losses(seesaw, GLOO_GT[rank])
    q, r = eql.class_weights()
    return (eql.pos_grad.tolist(), eql.neg_grad.tolist(), int(eql.grad_steps),
            q.tolist(), r.tolist(), seesaw.cum_samples.tolist())


@pytest.mark.timeout(400)
def test_two_gloo_workers_sum_the_gradient_statistics_and_class_counts():
    results = run_gloo_workers(_gloo_worker)
    # p = (0.5, 0.75) on every proposal.
    # rank 0, [0, 0, bg]: pos = (2 * 0.5, 0), neg = (1 * 0.5, 3 * 0.75)
    # rank 1, [1, bg]:    pos = (0, 1 * 0.25), neg = (2 * 0.5, 1 * 0.75)
    pos, neg = [1.0, 0.25], [1.5, 3.0]
    g = [pos[0] / neg[0], pos[1] / neg[1]]
    r = [_f(g[0]), _f(g[1])]
    q = [1 + 4 * (1 - r[0]), 1 + 4 * (1 - r[1])]
    for rank in (0, 1):
        got_pos, got_neg, steps, got_q, got_r, counts = results[rank]
        assert got_pos == pytest.approx(pos) and got_neg == pytest.approx(neg)
        assert steps == 1
        assert got_q == pytest.approx(q, rel=1e-6) and got_r == pytest.approx(r, rel=1e-6)
        assert counts == [2.0, 1.0]  # seesaw N: (2, 0) + (0, 1)
    # the same predictors fed rank 0's batch in a single process see only its statistics
    # (no positive of class 1): the workers' results above are the sums, not local values
    eql, seesaw = make_predictor("eqlv2", num_classes=2), make_predictor("seesaw", num_classes=2)
    set_logits(eql, EQL_Z)
    run_losses(eql, GLOO_GT[0])
    run_losses(seesaw, GLOO_GT[0])
    assert eql.pos_grad.tolist() == pytest.approx([1.0, 0.0])
    assert eql.neg_grad.tolist() == pytest.approx([0.5, 2.25])
    assert seesaw.cum_samples.tolist() == [2.0, 0.0]
    got_r = results[0][4]
    assert got_r[1] != pytest.approx(eql.class_weights()[1][1].item(), rel=1e-3)


# --------------------------------------------------------------------------- configs
PEER_CONFIGS = {
    "fedloss": (FedLossROIHeads, FedLossFastRCNNOutputLayers),
    "eqlv2": (EQLv2ROIHeads, EQLv2FastRCNNOutputLayers),
    "seesaw": (SeesawROIHeads, SeesawFastRCNNOutputLayers),
    "balanced_softmax": (BalancedSoftmaxROIHeads, BalancedSoftmaxFastRCNNOutputLayers),
}


def load_cfg(path, *opts):
    cfg = get_project_cfg()
    cfg.merge_from_file(str(ROOT / path))
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.mark.parametrize("method", sorted(PEER_CONFIGS))
def test_peer_configs_load_and_build(method):
    heads_cls, predictor_cls = PEER_CONFIGS[method]
    embedded = f"configs/Embedded/{method}_mask_rcnn_R_18_FPN_cpu_embedded.yaml"
    lvis = f"configs/LVISv1/{method}_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml"
    cfg = load_cfg(embedded, "MODEL.DEVICE", "cpu")
    assert cfg.OUTPUT_DIR == f"output/{method}_mask_rcnn_R_18_FPN_cpu_embedded"
    model = build_model(cfg)
    heads = model.roi_heads
    assert type(heads) is heads_cls and not isinstance(heads, LDAROIHeads)
    assert type(heads.box_predictor) is predictor_cls
    assert heads.box_predictor.num_classes == cfg.MODEL.ROI_HEADS.NUM_CLASSES == 24
    assert heads.mask_on
    # the LVIS config: the baseline's recipe plus the method, with the papers' LVIS defaults
    cfg = load_cfg(lvis, "MODEL.DEVICE", "cpu")
    base = load_cfg("configs/LVISv1/mask_rcnn_R_50_FPN_12ep_lvisv1.yaml")
    assert cfg.MODEL.ROI_HEADS.NAME == heads_cls.__name__
    assert cfg.SOLVER == base.SOLVER and cfg.DATALOADER == base.DATALOADER
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203
    peers = cfg.MODEL.PEERS
    assert (peers.FED_LOSS.NUM_CLASSES, peers.FED_LOSS.FREQ_WEIGHT_POWER) == (50, 0.5)
    assert (peers.EQLV2.GAMMA, peers.EQLV2.MU, peers.EQLV2.ALPHA) == (12.0, 0.8, 4.0)
    assert (peers.SEESAW.P, peers.SEESAW.Q, peers.SEESAW.TEMPERATURE) == (0.8, 2.0, 20.0)
    assert peers.SEESAW.NORMED_LINEAR
    assert peers.BALANCED_SOFTMAX.FREQ_SOURCE == "sampled"


def test_lvis_predictors_build_with_1203_classes():
    cfg = load_cfg("configs/LVISv1/mask_rcnn_R_50_FPN_12ep_lvisv1.yaml")
    shape = ShapeSpec(channels=1024)
    sizes = {"fedloss": 1203, "eqlv2": 1204, "seesaw": 1205, "balanced_softmax": 1204}
    for method, (_, predictor_cls) in PEER_CONFIGS.items():
        predictor = predictor_cls(cfg, shape)
        assert predictor.cls_score.out_features == sizes[method], method



# --------------------------------------------------------------------------- training
LOSS_TERMS = {
    "fedloss": ["loss_cls"],
    "eqlv2": ["loss_cls", "eqlv2/neg_weight_mean"],
    "seesaw": ["loss_cls_classes", "loss_cls_objectness"],
    "balanced_softmax": ["loss_cls"],
}


@pytest.mark.timeout(900)
@pytest.mark.parametrize("method", sorted(PEER_CONFIGS))
def test_two_training_iterations_then_eval_only_on_the_tiny_dataset(
    method, train_args, tmp_path
):
    out = tmp_path / method
    config = ROOT / f"configs/Embedded/{method}_mask_rcnn_R_18_FPN_cpu_embedded.yaml"
    opts = ["MODEL.PEERS.FED_LOSS.NUM_CLASSES", "3"]  # of 6 classes: negatives are sampled
    # train without the end-of-training evaluation; the --eval-only run below evaluates
    train_net.main(
        train_args(out, "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()", *opts, config=config)
    )
    with open(os.path.join(out, "metrics.json")) as f:
        rows = [r for r in map(json.loads, filter(str.strip, f)) if "total_loss" in r]
    assert len(rows) >= 1, "no training metrics written"
    terms = LOSS_TERMS[method] + ["loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc",
                                  "total_loss", "fast_rcnn/cls_accuracy"]
    for row in rows:
        for k in terms:
            assert k in row and math.isfinite(row[k]), (k, row)
    # the training statistics are in the checkpoint
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    prefix = "roi_heads.box_predictor."
    if method in NEEDS_FREQ:
        assert bool(state[prefix + "class_freq_ready"])
        assert state[prefix + "class_freq"].shape == (6,)
    if method == "eqlv2":
        assert int(state[prefix + "grad_steps"]) == 2
    if method == "seesaw":
        assert state[prefix + "cum_samples"].sum() > 0

    # --eval-only from the checkpoint, with a training set that cannot be read: detectron2's
    # inference and the LVIS evaluation run on the predictor's (R, C + 1) scores. (Score
    # threshold 0: after 2 iterations from scratch, scores can all be below the config's 1e-3.)
    if "tiny_missing_train" not in DatasetCatalog.list():
        register_lvis_format("tiny_missing_train", str(tmp_path / "absent.json"), str(tmp_path))
    res = train_net.main(
        train_args(
            out, "MODEL.WEIGHTS", str(out / "model_final.pth"),
            "DATASETS.TRAIN", "('tiny_missing_train',)", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
            "TEST.LVIS_EVAL.WRITE_RESULTS_JSON", "True", *opts, eval_only=True, config=config,
        )
    )
    results = json.loads((out / "inference/tiny_embedded_val/lvis_instances_results.json")
                         .read_text())
    assert results and all(1 <= r["category_id"] <= 6 for r in results)
    for task in ("bbox", "segm"):
        for k in ("AP", "APr", "APc", "APf"):
            assert k in res[task]


# --------------------------------------------------------------------------- the shared base
@pytest.mark.parametrize("kind", sorted(PREDICTORS) + ["lda"])
def test_every_loss_is_multiplied_by_its_loss_weight(kind):
    from projects_lda import LDAFastRCNNOutputLayers

    def build(**kwargs):
        if kind != "lda":
            return make_predictor(kind, **kwargs)
        return LDAFastRCNNOutputLayers(
            ShapeSpec(channels=8), box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
            num_classes=3, class_freq=torch.tensor([1.0, 2.0, 3.0]), **kwargs,
        )

    plain = build()
    with torch.no_grad():
        plain.bbox_pred.bias.fill_(0.5)  # a box regression loss > 0
    state = {k: v.clone() for k, v in plain.state_dict().items()}  # before the statistics move
    expected = run_losses(plain, [0, 1, 1, 3])
    cls_key = next(k for k in expected if k != "loss_box_reg")
    weighted = build(loss_weight={cls_key: 2.0, "loss_box_reg": 3.0})
    weighted.load_state_dict(state)
    got = run_losses(weighted, [0, 1, 1, 3])
    assert set(got) == set(expected) and expected["loss_box_reg"] > 0 and expected[cls_key] > 0
    for k, v in expected.items():
        factor = {cls_key: 2.0, "loss_box_reg": 3.0}.get(k, 1.0)
        assert got[k].item() == pytest.approx(factor * v.item(), rel=1e-6), k
