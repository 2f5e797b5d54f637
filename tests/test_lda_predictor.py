"""The LDA box predictor on tiny hand-made inputs (in the style of detectron2's test_fast_rcnn)."""
import math

import pytest
import torch
from conftest import assert_finite_and_every_parameter_gets_a_gradient, make_proposals, run_losses

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.utils.events import EventStorage

from projects_lda import LDAFastRCNNOutputLayers

C = 3
FREQ = torch.tensor([6.0, 3.0, 1.0])  # beta = N / (C n_k) = [10/18, 10/9, 10/3]
BETA = [10 / 18, 10 / 9, 10 / 3]


def make_predictor(**kwargs):
    kwargs.setdefault("class_freq", FREQ)
    return LDAFastRCNNOutputLayers(
        ShapeSpec(channels=8),
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        num_classes=C,
        test_score_thresh=0.0,
        test_topk_per_image=100,
        **kwargs,
    )


def set_constant(predictor, fgbg=(0.0, 0.0), unbalanced=(0.0,) * C, balanced=(0.0,) * C):
    """Zero weights, so every proposal gets the given logits (the biases)."""
    with torch.no_grad():
        for layer, bias in [
            (predictor.fgbg_score, fgbg),
            (predictor.unbalanced_score, unbalanced),
            (predictor.balanced_score, balanced),
        ]:
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor(bias))
        predictor.projection.weight.zero_()
        predictor.projection.bias.fill_(1.0)  # every projected feature is the same vector
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()


def test_losses_by_hand_fixed_alpha():
    predictor = make_predictor(fixed_alpha=1.0, divergence_weight=0.1, balanced_loss_factor=1.0)
    set_constant(predictor)
    losses = run_losses(predictor, [0, 1, 1, C])  # three foreground, one background
    assert set(losses) == {
        "loss_fgbg",
        "loss_cls_unbalanced",
        "loss_cls_balanced",
        "loss_intra",
        "loss_inter",
        "loss_box_reg",
    }
    assert losses["loss_fgbg"].item() == pytest.approx(math.log(2), abs=1e-6)
    # foreground losses: sums over the 3 foreground proposals / all 4 sampled proposals
    expected_unbalanced = 3 * math.log(3) / 4
    assert losses["loss_cls_unbalanced"].item() == pytest.approx(expected_unbalanced, abs=1e-6)
    expected_balanced = (BETA[0] + 2 * BETA[1]) * math.log(3) / 4
    assert losses["loss_cls_balanced"].item() == pytest.approx(expected_balanced, abs=1e-6)
    # identical projections: intra distance 0; identical centres: hinge m - 0 = 1, times lambda
    assert losses["loss_intra"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_inter"].item() == pytest.approx(0.1, abs=1e-6)
    assert losses["loss_box_reg"].item() == pytest.approx(0.0, abs=1e-6)
    # BALANCED_LOSS_FACTOR multiplies alpha * L_b
    predictor.balanced_loss_factor = 5.0
    scaled = run_losses(predictor, [0, 1, 1, C])["loss_cls_balanced"].item()
    assert scaled == pytest.approx(5 * expected_balanced, abs=1e-6)


def test_divergence_losses_use_the_foreground_projections_only():
    # projected features z = the first 2 input dims: class 0 -> (1, 0); class 1 -> (1, 0), (0, 1);
    # two background proposals -> (-1, 0). Only the 3 foreground ones enter Eq. 7 and Eq. 8.
    predictor = make_predictor(fixed_alpha=1.0, divergence_weight=0.1, proj_dim=2)
    set_constant(predictor)
    with torch.no_grad():
        predictor.projection.weight.copy_(torch.eye(2, 8))
        predictor.projection.bias.zero_()
    x = torch.zeros(5, 8)
    x[:, :2] = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.0]])
    with EventStorage():
        losses = predictor.losses(predictor(x), make_proposals([0, 1, 1, C, C]))
    # Eq. 7: class 1's centre (0.5, 0.5) is at cosine distance 1 - 1/sqrt(2) from both its samples;
    # class 0 has one sample (no intra term). With the background as a class: half of that.
    r = 1 / math.sqrt(2)
    assert losses["loss_intra"].item() == pytest.approx(0.1 * (1 - r), rel=1e-6)
    # Eq. 8: centres (1, 0), (0.5, 0.5): cos = 1/sqrt(2), hinge 1 - (1 - 1/sqrt(2)) on both
    # ordered pairs. With the background centre (-1, 0) among them: 2 of 6 pairs non-zero.
    assert losses["loss_inter"].item() == pytest.approx(0.1 * r, rel=1e-6)


def test_adaptive_alpha_by_hand():
    predictor = make_predictor(gamma=1.5, balanced_loss_factor=2.0)
    assert predictor.fixed_alpha < 0  # the default: alpha from Eq. 6
    # g_u predicts class 1, g_b predicts class 0; labels 0, 1, 1: acc_u = 2/3, acc_b = 1/3
    set_constant(predictor, fgbg=(2.0, 0.0), unbalanced=(0.0, 5.0, 0.0), balanced=(5.0, 0.0, 0.0))
    with EventStorage() as storage:
        torch.manual_seed(0)
        losses = predictor.losses(predictor(torch.rand(3, 8)), make_proposals([0, 1, 1]))
        alpha = (1 / 3) ** 1.5
        assert storage.history("lda/alpha").latest() == pytest.approx(alpha)
        assert storage.history("lda/acc_unbalanced").latest() == pytest.approx(2 / 3)
        assert storage.history("lda/acc_balanced").latest() == pytest.approx(1 / 3)
        # detectron2's fg metrics from the test-time score p_fg * p_b: class 0 for every proposal
        assert storage.history("fast_rcnn/fg_cls_accuracy").latest() == pytest.approx(1 / 3)
        assert storage.history("fast_rcnn/false_negative").latest() == 0.0
        assert storage.history("lda/fgbg_accuracy").latest() == 1.0
        # over all rows it would need g_b on the background rows, which training does not run
        assert "fast_rcnn/cls_accuracy" not in storage.histories()
    ce0 = -math.log(math.exp(5) / (math.exp(5) + 2))
    ce1 = -math.log(1 / (math.exp(5) + 2))
    expected = 2.0 * alpha * (BETA[0] * ce0 + 2 * BETA[1] * ce1) / 3
    assert losses["loss_cls_balanced"].item() == pytest.approx(expected, rel=1e-5)
    # alpha is a constant of the step: L_b's gradient reaches g_b only (not g_u, whose accuracy
    # alpha is measured from), and on g_b's bias it is 2 alpha / 3 * sum_i beta_i (p_i - e_y_i)
    losses["loss_cls_balanced"].backward()
    for other in (predictor.unbalanced_score, predictor.fgbg_score, predictor.projection):
        assert other.weight.grad is None and other.bias.grad is None
    p = torch.softmax(torch.tensor([5.0, 0.0, 0.0]), dim=0)
    grad = BETA[0] * (p - torch.tensor([1.0, 0, 0])) + 2 * BETA[1] * (p - torch.tensor([0, 1.0, 0]))
    assert torch.allclose(predictor.balanced_score.bias.grad, 2.0 * alpha / 3 * grad, atol=1e-6)


def test_predict_probs_is_pfg_times_pbalanced():
    predictor = make_predictor().eval()
    set_constant(predictor, fgbg=(math.log(3.0), 0.0), balanced=(0.0, math.log(2.0), 0.0))
    proposals = make_proposals([0, 1])
    probs = predictor.predict_probs(predictor(torch.rand(2, 8)), proposals)
    expected = torch.tensor([0.75 * 0.25, 0.75 * 0.5, 0.75 * 0.25, 0.25])
    assert len(probs) == 1 and probs[0].shape == (2, C + 1)
    assert torch.allclose(probs[0], expected.expand(2, -1), atol=1e-6)


def test_inference_skips_unbalanced_and_projection():
    predictor = make_predictor().eval()
    calls = []
    for m in [predictor.unbalanced_score, predictor.projection]:
        m.register_forward_hook(lambda *a: calls.append(1))
    proposals = make_proposals([0, 1, 2])
    for p in proposals:
        p.remove("gt_boxes")
        p.remove("gt_classes")
    predictions = predictor(torch.rand(3, 8))
    assert predictions[0].features is None and predictions[0].balanced.shape == (3, C)
    instances, kept = predictor.inference(predictions, proposals)
    assert calls == []
    assert len(instances) == 1 and len(kept) == 1
    out = instances[0]
    assert out.has("pred_boxes") and out.has("scores") and out.has("pred_classes")
    assert out.scores.shape == out.pred_classes.shape
    assert bool((out.pred_classes < C).all())


@pytest.mark.parametrize("gt_classes", [[], [C, C, C]], ids=["no_proposals", "no_foreground"])
def test_empty_batches_finite_and_every_parameter_gets_a_gradient(gt_classes):
    predictor = make_predictor()
    assert_finite_and_every_parameter_gets_a_gradient(predictor, run_losses(predictor, gt_classes))


def test_class_with_no_training_sample_gets_weight_zero_and_finite_losses():
    # n = (5, 0, 2): C' = 2 classes with samples, N = 7, beta = N / (C' n_k) = (0.7, 0, 1.75)
    predictor = make_predictor(
        class_freq=torch.tensor([5.0, 0.0, 2.0]), fixed_alpha=1.0, balanced_loss_factor=1.0
    )
    set_constant(predictor)
    losses = run_losses(predictor, [0, 2, 2, C])
    assert all(torch.isfinite(v) for v in losses.values())
    expected = (0.7 + 2 * 1.75) * math.log(3) / 4
    assert losses["loss_cls_balanced"].item() == pytest.approx(expected, rel=1e-6)
    # a sample labelled with the class without training samples adds nothing to L_b
    zero = run_losses(predictor, [1, 1, C])
    assert zero["loss_cls_balanced"].item() == 0.0


def test_frequencies_missing_or_wrong():
    predictor = make_predictor(class_freq=None)
    with pytest.raises(RuntimeError, match="class frequencies are not set"):
        run_losses(predictor, [0, 1])
    with pytest.raises(ValueError, match="NUM_CLASSES=3"):
        make_predictor(class_freq=torch.ones(5))
    with pytest.raises(ValueError, match="all zero"):
        make_predictor(class_freq=torch.zeros(3))


def test_frequency_callable_is_called_once_lazily():
    calls = []

    def provide():
        calls.append(1)
        return FREQ

    predictor = make_predictor(class_freq=provide)
    assert calls == [] and not bool(predictor.class_freq_ready)
    run_losses(predictor, [0, 1])
    run_losses(predictor, [1, 2])
    assert calls == [1]
    assert torch.equal(predictor.class_freq, FREQ)


def test_checkpoint_round_trip_keeps_frequencies_and_window():
    trained = make_predictor(window=4)
    for seed in range(3):
        run_losses(trained, [0, 1, 2, C], seed=seed)
    restored = make_predictor(class_freq=None, window=4)
    restored.load_state_dict(trained.state_dict())
    assert bool(restored.class_freq_ready)
    assert torch.equal(restored.class_freq, FREQ)
    assert torch.equal(restored.accuracy_window.counts, trained.accuracy_window.counts)
    assert int(restored.accuracy_window.position) == 3
    assert restored.current_alpha() == pytest.approx(trained.current_alpha())


def test_normed_linear_option_makes_three_cosine_classifiers():
    from projects_lda.modeling.layers import NormedLinear

    predictor = make_predictor(normed_linear=True, temperature=10.0)
    for layer in (predictor.fgbg_score, predictor.unbalanced_score, predictor.balanced_score):
        assert isinstance(layer, NormedLinear) and layer.temperature == 10.0
    assert type(make_predictor().balanced_score) is torch.nn.Linear  # the paper's default
    with torch.no_grad():
        predictor.balanced_score.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0],
                                                            [0, 1.0, 0, 0, 0, 0, 0, 0],
                                                            [-1.0, 0, 0, 0, 0, 0, 0, 0]]))
        predictor.balanced_score.bias.zero_()
    x = torch.tensor([[3.0, 4.0, 0, 0, 0, 0, 0, 0]])
    predictor.eval()
    logits, _ = predictor(x)
    # tau * cos: 10 * (3/5, 4/5, -3/5); the same for any positive scale of the feature
    assert logits.balanced[0].tolist() == pytest.approx([6.0, 8.0, -6.0], rel=1e-5)
    assert torch.allclose(predictor(7 * x)[0].balanced, logits.balanced, atol=1e-5)
    predictor.train()
    assert_finite_and_every_parameter_gets_a_gradient(predictor, run_losses(predictor, [0, C]))


def _reference_losses(predictor, x, gt_classes, alpha):
    """
    The LDA classification losses written the obvious way, as the predictor computed them before
    its C-way heads ran on the foreground rows only: every head on all rows, the foreground rows
    picked by a boolean mask, the class centres of Eq. 7-8 class by class.
    """
    import torch.nn.functional as F

    R = gt_classes.numel()
    fg = (gt_classes >= 0) & (gt_classes < C)
    y = gt_classes[fg]
    u = predictor.unbalanced_score(x)[fg]
    b = predictor.balanced_score(x)[fg]
    z = predictor.projection(x)[fg]
    beta = torch.tensor(BETA)
    losses = {
        "loss_fgbg": F.cross_entropy(predictor.fgbg_score(x), (~fg).long(), reduction="sum") / R,
        "loss_cls_unbalanced": F.cross_entropy(u, y, reduction="sum") / R + 0 * u.sum(),
        "loss_cls_balanced": predictor.balanced_loss_factor * alpha
        * ((beta[y] * F.cross_entropy(b, y, reduction="none")).sum() / R + 0 * b.sum()),
    }
    classes = sorted(set(y.tolist()))
    centres = {k: z[y == k].mean(dim=0) for k in classes}
    intra = [
        (1 - F.cosine_similarity(z[y == k], centres[k][None], dim=1)).mean()
        for k in classes if int((y == k).sum()) >= 2
    ]
    inter = [
        (predictor.margin - (1 - F.cosine_similarity(centres[j], centres[k], dim=0))).clamp(min=0)
        for j in classes for k in classes if j != k
    ]
    zero = 0 * z.sum()
    lam = predictor.divergence_weight
    losses["loss_intra"] = lam * (torch.stack(intra).mean() if intra else zero)
    losses["loss_inter"] = lam * (torch.stack(inter).mean() if inter else zero)
    return losses


@pytest.mark.parametrize(
    "gt_classes",
    [[0, 2, 2, 1, C, 0, 0, C, 2, C, C, 1], [1, C, C, C], [C, C, C]],
    ids=["mixed", "one_foreground", "no_foreground"],
)
def test_foreground_only_heads_give_the_losses_and_gradients_of_heads_on_all_rows(gt_classes):
    torch.manual_seed(0)
    predictor = make_predictor(fixed_alpha=0.7, divergence_weight=0.3, margin=1.2, proj_dim=4)
    for p in predictor.parameters():  # away from the zero biases of the initialisation
        torch.nn.init.normal_(p, std=0.5)
    reference = __import__("copy").deepcopy(predictor)
    x = torch.randn(len(gt_classes), 8)
    proposals = make_proposals(gt_classes)
    seen = []
    for head in (predictor.unbalanced_score, predictor.balanced_score, predictor.projection):
        head.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0].shape[0]))
    with EventStorage():
        losses = predictor.losses(predictor(x), proposals)
    num_fg = sum(c < C for c in gt_classes)
    assert seen == [num_fg] * 3  # g_u, g_b and the projection head: the foreground rows only

    expected = _reference_losses(reference, x, proposals[0].gt_classes, alpha=0.7)
    expected["loss_box_reg"] = reference.box_reg_loss(
        proposals[0].proposal_boxes.tensor, proposals[0].gt_boxes.tensor, reference.bbox_pred(x),
        proposals[0].gt_classes,
    )
    assert set(losses) == set(expected)
    for k in expected:
        assert losses[k].item() == pytest.approx(expected[k].item(), abs=1e-6), k
    sum(losses.values()).backward()
    sum(expected.values()).backward()
    for (name, p), q in zip(predictor.named_parameters(), reference.parameters()):
        assert p.grad is not None and q.grad is not None, name  # DDP: every parameter takes part
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_trajectory_tool_is_deterministic_and_tells_a_change(tmp_path):
    """tools/predictor_trajectory.py, run as users run it: the same code twice gives the same
    losses and alpha at every step; another learning rate is told apart; files of different
    lengths are refused."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).resolve().parents[1] / "tools" / "predictor_trajectory.py"

    def run(name, *args, steps="12"):
        cmd = [sys.executable, str(tool), "--out", str(tmp_path / name), "--steps", steps,
               "--window", "4", "--rois", "64", "--dim", "16", *args]
        return subprocess.run(cmd, capture_output=True, text=True)

    assert run("a.json").returncode == 0
    steps = json.loads((tmp_path / "a.json").read_text())
    assert len(steps) == 12
    assert set(steps[0]) == {"alpha", "loss_fgbg", "loss_cls_unbalanced", "loss_cls_balanced",
                             "loss_intra", "loss_inter", "loss_box_reg"}
    assert all(math.isfinite(v) for s in steps for v in s.values())
    assert max(s["alpha"] for s in steps) > 0  # the balanced loss takes part
    first = str(tmp_path / "a.json")
    same = run("b.json", "--compare", first).stdout
    assert same.count("largest relative difference 0.00e+00") == 7, same
    other = run("c.json", "--compare", first, "--lr", "0.1").stdout
    assert "loss_cls_unbalanced: largest relative difference 0.00e+00" not in other, other
    assert "loss_cls_unbalanced: largest relative difference" in other, other
    short = run("d.json", "--compare", first, steps="10")
    assert short.returncode != 0 and "a.json has 12 steps, this run 10" in short.stderr, \
        short.stderr[-2000:]
    assert not (tmp_path / "d.json").exists()
