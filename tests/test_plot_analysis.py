"""
tools/plot_analysis.py (projects_lda/benchmark/plot_analysis.py): the distance, weight-norm,
alpha and AP helpers on hand-made inputs, each command writing a PNG, and feature-distances on a
model trained for a few iterations on the tiny dataset (the ``trained_lda`` run of conftest.py).
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from detectron2.data import DatasetCatalog

from projects_lda.benchmark import plot_analysis as pa


PRED = "roi_heads.box_predictor."


def _png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# ------------------------------------------------------------------------------ distances
def test_class_distance_stats_by_hand():
    # class 0: (1, 0), (0, 1) -> centre (.5, .5); cos to centre = 1/sqrt(2) for both
    # class 2: (2, 0), (4, 0) -> centre (3, 0); distances 0
    # class 5: one sample (0, 3): centre (0, 1) direction; intra undefined (NaN)
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 2, 2, 5])
    s = pa.class_distance_stats(feats, labels)
    assert s["classes"].tolist() == [0, 2, 5]
    assert s["counts"].tolist() == [2, 2, 1]
    d = 1 - 1 / math.sqrt(2)
    assert s["intra"][0] == pytest.approx(d)
    assert s["intra"][1] == pytest.approx(0.0)
    assert math.isnan(s["intra"][2])
    # centre distances: 0-2: 1 - 1/sqrt2, 0-5: 1 - 1/sqrt2, 2-5: 1 (orthogonal)
    expected = np.array([[0, d, d], [d, 0, 1], [d, 1, 0]])
    np.testing.assert_allclose(s["pairwise"], expected, atol=1e-12)
    np.testing.assert_allclose(s["inter"], [d, (d + 1) / 2, (d + 1) / 2])
    np.testing.assert_allclose(s["nearest"], [d, d, d])
    assert s["nearest_class"].tolist() == [2, 0, 0]


def test_class_distance_stats_single_class():
    s = pa.class_distance_stats(torch.ones(3, 4), torch.zeros(3, dtype=torch.long))
    assert s["intra"][0] == pytest.approx(0.0)
    assert math.isnan(s["inter"][0]) and math.isnan(s["nearest"][0])


# ------------------------------------------------------------------------------ weight norms
def _fake_runs(tmp_path):
    """A baseline with 3 classes + background and an LDA predictor with class_freq."""
    base, lda = tmp_path / "base", tmp_path / "lda"
    base.mkdir()
    lda.mkdir()
    # baseline rows: norms 5, 1, 2 (+ background row of norm 100, dropped)
    cls = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [100.0, 0.0]])
    torch.save({"model": {PRED + "cls_score.weight": cls, PRED + "cls_score.bias": torch.zeros(4)},
                "iteration": 1}, base / "model_final.pth")
    lda_state = {
        PRED + "unbalanced_score.weight": torch.tensor([[1.0, 0.0], [0.0, 3.0], [0.0, 2.0]]),
        PRED + "balanced_score.weight": torch.tensor([[6.0, 8.0], [0.0, 1.0], [1.0, 0.0]]),
        PRED + "fgbg_score.weight": torch.ones(2, 2),
        # frequencies: class 1 most, then 2, then 0
        PRED + "class_freq": torch.tensor([1.0, 50.0, 7.0]),
        PRED + "class_freq_ready": torch.tensor(True),
    }
    torch.save({"model": lda_state}, lda / "model_final.pth")
    return [("base", base), ("lda", lda)]


def test_weight_norm_data_sorted_by_class_freq(tmp_path):
    curves, order, groups = pa.weight_norm_data(_fake_runs(tmp_path))
    assert order.tolist() == [1, 2, 0]
    assert groups is None  # no config.yaml: no metadata
    np.testing.assert_allclose(curves["base: cls_score"], [1, 2, 5])
    np.testing.assert_allclose(curves["lda: unbalanced_score"], [3, 2, 1])
    np.testing.assert_allclose(curves["lda: balanced_score"], [1, 1, 10])
    assert set(curves) == {"base: cls_score", "lda: unbalanced_score", "lda: balanced_score"}
    assert pa.head_tail_ratio([3, 2, 1]) == pytest.approx(3.0)
    assert pa.head_tail_ratio([4, 9, 1, 2], ["f", "c", "r", "r"]) == pytest.approx(4 / 1.5)


def test_weight_norms_command(tmp_path, capsys):
    runs = _fake_runs(tmp_path)
    out = tmp_path / "norms.png"
    specs = [x for n, d in runs for x in ("--run", f"{n}={d}")]
    pa.main(["weight-norms", *specs, "--out", str(out)])
    _png(out)
    assert str(out) in capsys.readouterr().out


# ------------------------------------------------------------------------------ alpha
def test_alpha_curves_and_command(tmp_path):
    rows = [
        {"iteration": 19, "lda/alpha": 0.0, "lda/acc_unbalanced": 0.1, "lda/acc_balanced": 0.2},
        {"iteration": 39, "lda/alpha": 0.5, "lda/acc_unbalanced": 0.7, "lda/acc_balanced": 0.1},
        # restarted from the checkpoint of iteration 19: its rows replace iteration 39 above
        {"iteration": 39, "lda/alpha": 0.25, "lda/acc_unbalanced": 0.6, "lda/acc_balanced": 0.2},
        {"iteration": 59, "lda/alpha": 0.1, "lda/acc_unbalanced": 0.5, "lda/acc_balanced": 0.3},
        {"iteration": 59, "bbox/AP": 1.0},  # evaluation row, no LDA keys
    ]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = pa.alpha_curves(tmp_path / "metrics.json")
    assert data["iteration"].tolist() == [19, 39, 59]
    assert data["lda/alpha"].tolist() == [0.0, 0.25, 0.1]
    assert data["lda/acc_unbalanced"].tolist() == [0.1, 0.6, 0.5]
    assert data["lda/acc_balanced"].tolist() == [0.2, 0.2, 0.3]
    out = tmp_path / "alpha.png"
    pa.main(["alpha", "--run", str(tmp_path), "--out", str(out)])
    _png(out)


def test_alpha_rejects_baseline_metrics(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"iteration": 19, "loss_cls": 1.0}) + "\n")
    with pytest.raises(SystemExit, match="LDA"):
        pa.alpha_curves(tmp_path / "metrics.json")


def test_lda_stats_by_hand(tmp_path, capsys):
    terms = {"loss_fgbg": 0.5, "loss_cls_unbalanced": 1.0, "loss_cls_balanced": 2.0,
             "loss_intra": 0.1, "loss_inter": 0.4, "total_loss": 5.0}
    rows = [{"iteration": i, "lda/alpha": a, "lda/acc_unbalanced": 0.5 + a,
             "lda/acc_balanced": 0.5, **terms}
            for i, a in zip((19, 39, 59, 79, 99), (0.0, 0.0, 0.1, 0.2, 0.3))]
    rows[0]["loss_inter"] = float("nan")  # written as NaN by json.dumps, read back as nan
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    freq = torch.tensor([1.0, 3.0, 0.0, 4.0])  # beta = 8 / (3 n_k) where n_k > 0
    torch.save({"model": {PRED + "class_freq": freq}}, tmp_path / "model_final.pth")
    s = pa.main(["lda-stats", "--run", f"lda={tmp_path}", "--out", str(tmp_path / "s.json")])["lda"]
    # alpha at the logged row at or after 25/50/75/100% of the 99 iterations
    assert s["alpha_at"] == {"25%": 0.0, "50%": 0.1, "75%": 0.2, "100%": 0.3}
    assert s["alpha_zero_fraction"] == pytest.approx(0.4)
    # the last fifth: iteration 99 only
    assert s["acc_unbalanced"] == pytest.approx(0.8) and s["acc_balanced"] == 0.5
    assert s["loss_share"] == pytest.approx({"loss_fgbg": 0.1, "loss_cls_unbalanced": 0.2,
                                             "loss_cls_balanced": 0.4, "loss_intra": 0.02,
                                             "loss_inter": 0.08})
    assert s["beta"] == pytest.approx({"max": 8 / 3, "median": 8 / 9, "min": 8 / 12,
                                       "classes_without_samples": 1})
    assert s["non_finite"] == ["loss_inter"]
    assert json.loads((tmp_path / "s.json").read_text())["lda"]["beta"]["max"] == s["beta"]["max"]
    assert "| lda | 0.000 / 0.100 / 0.200 / 0.300 | 40% |" in capsys.readouterr().out
    # a run still training: the checkpoint last_checkpoint names gives the class frequencies
    (tmp_path / "model_final.pth").rename(tmp_path / "model_0000099.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    assert pa.lda_stats(tmp_path)["beta"] == s["beta"]


# ------------------------------------------------------------------------------ AP groups
def test_ap_groups(tmp_path):
    def rec(ap, apr):
        m = {"AP": ap, "AP50": 0.0, "APr": apr, "APc": 5.0, "APf": 9.0}
        return {"bbox": dict(m, AP=ap + 1), "segm": m}

    results = {"runs": {"baseline": {"0": rec(10.0, 2.0), "1": rec(12.0, float("nan"))},
                        "lda": {"0": rec(14.0, 6.0), "1": rec(14.0, -100.0)}},
               "summary": {}, "baseline": "baseline"}
    stats = pa.ap_group_stats(results, "segm")
    assert stats["baseline"]["AP"] == pytest.approx((11.0, math.sqrt(2)))
    assert stats["baseline"]["APr"] == (2.0, 0.0)  # NaN seed skipped
    assert stats["lda"]["AP"] == (14.0, 0.0)
    assert stats["lda"]["APr"] == (6.0, 0.0)  # -100: LVIS's "no rare class", skipped
    assert pa.ap_group_stats(results, "bbox")["lda"]["AP"] == (15.0, 0.0)
    f = tmp_path / "results.json"
    f.write_text(json.dumps(results))
    out = tmp_path / "ap.png"
    pa.main(["ap-groups", "--results", str(f), "--out", str(out), "--task", "bbox"])
    _png(out)


def test_per_class_ap(tmp_path, capsys):
    def rec(ap):  # per-class AP of categories 1-3 (JSON keys are strings); category 3 has none
        a = {"per_class_ap": {"1": ap, "2": ap + 20.0}}
        return {"analysis": {"segm": a, "bbox": a, "class_image_count": {"1": 4, "2": 150, "3": 9},
                             "class_frequency": {"1": "r", "2": "f", "3": "r"}}}

    results = {"runs": {"baseline": {"0": rec(10.0), "1": rec(20.0)}, "lda": {"0": rec(30.0)}}}
    count, freq, ap = pa.per_class_ap_stats(results, "segm")
    assert count == {1: 4, 2: 150, 3: 9} and freq[2] == "f"
    assert ap == {"baseline": {1: 15.0, 2: 35.0}, "lda": {1: 30.0, 2: 50.0}}
    f = tmp_path / "results.json"
    f.write_text(json.dumps(results))
    out = tmp_path / "ap_per_class.png"
    pa.main(["per-class-ap", "--results", str(f), "--out", str(out)])
    _png(out)
    printed = capsys.readouterr().out
    assert "APr  15.0 (1 classes) APf  35.0 (1 classes)" in printed
    assert "slope +12.7 AP per 10x training images" in printed  # 20 AP over log10(150 / 4)
    with pytest.raises(SystemExit, match="no per-class AP"):
        pa.per_class_ap_stats({"runs": {"baseline": {"0": {}}}})
    assert list(pa.per_class_ap_stats(results, "segm", ["lda"])[2]) == ["lda"]
    with pytest.raises(SystemExit, match=r"--methods \['seesaw'\] not in the results; "
                       r"they hold: 'baseline', 'lda'"):
        pa.main(["per-class-ap", "--results", str(f), "--out", str(out), "--methods", "seesaw"])


def test_group_edges_are_the_datasets_own():
    lvis = {1: 10, 2: 11, 3: 100, 4: 101, 5: 3}
    freq = {1: "r", 2: "c", 3: "c", 4: "f", 5: "r"}
    assert pa.group_edges(lvis, freq) == [10.5, 100.5]
    # the icon world's 1,203 classes map LVIS's thresholds to 4 and 18 images
    icons = {1: 4, 2: 5, 3: 18, 4: 19}
    assert pa.group_edges(icons, {1: "r", 2: "c", 3: "c", 4: "f"}) == [4.5, 18.5]
    # no common class: no edge; a gap between groups: midway; overlapping groups: no edge
    assert pa.group_edges({1: 2, 2: 8}, {1: "r", 2: "f"}) == []
    assert pa.group_edges({1: 2, 2: 8, 3: 40}, {1: "r", 2: "c", 3: "f"}) == [5.0, 24.0]
    assert pa.group_edges({1: 9, 2: 5, 3: 40}, {1: "r", 2: "c", 3: "f"}) == [22.5]


# ------------------------------------------------------------------------------ accuracy
def test_group_accuracy_by_hand():
    # classes 0 (r), 1 (c), 2 (f); boxes of classes 0, 0, 1, 2, 2, 2; argmax 0, 1, 1, 2, 2, 0
    logits = torch.tensor([[3.0, 0, 0], [0, 2, 1], [0, 5, 1], [0, 0, 1], [0, 1, 2], [9, 0, 0]])
    a = pa.group_accuracy(logits, torch.tensor([0, 0, 1, 2, 2, 2]), ["r", "c", "f"])
    assert a["all"] == pytest.approx(4 / 6)
    assert (a["r"], a["c"], a["f"]) == (0.5, 1.0, pytest.approx(2 / 3))
    assert a["boxes"] == {"all": 6, "r": 2, "c": 1, "f": 3}
    none_rare = pa.group_accuracy(logits[2:], torch.tensor([1, 2, 2, 2]), ["r", "c", "f"])
    assert math.isnan(none_rare["r"]) and none_rare["boxes"]["r"] == 0


# ------------------------------------------------------------------------------ features
def test_feature_distances_smoke(trained_lda, tmp_path, capsys):
    out_dir = trained_lda["dir"]  # read only: a checkpoint and its config.yaml are needed
    cfg, model = pa.load_model(out_dir)
    dicts = DatasetCatalog.get("tiny_embedded_val")[:3]
    feats, labels = pa.gt_box_features(cfg, model, dicts)
    n = sum(len(d["annotations"]) for d in dicts)
    assert feats.shape == (n, cfg.MODEL.ROI_BOX_HEAD.FC_DIM) and labels.shape == (n,)
    assert torch.isfinite(feats).all()
    proj, _ = pa.gt_box_features(cfg, model, dicts, space="projection")
    assert proj.shape == (n, cfg.MODEL.LDA.PROJ_DIM)

    out = tmp_path / "dist.png"
    pa.main(["feature-distances", "--run", f"lda={out_dir}", "--dataset", "tiny_embedded_val",
             "--max-images", "4", "--out", str(out)])
    _png(out)
    printed = capsys.readouterr().out
    assert "mean intra" in printed and str(out) in printed

    # the same model's classifiers on the same boxes (this test's worker trained it already)
    rows = pa.main(["gt-accuracy", "--run", f"lda={out_dir}", "--dataset", "tiny_embedded_val",
                    "--max-images", "3", "--out", str(tmp_path / "acc.json")])
    assert list(rows) == ["lda/g_u", "lda/g_b"]
    for a in rows.values():
        b = a["boxes"]
        assert b["all"] == n == b["r"] + b["c"] + b["f"]
        assert 0.0 <= a["all"] <= 1.0
    saved = json.loads((tmp_path / "acc.json").read_text())
    assert {k: (v["all"], v["boxes"]) for k, v in saved.items()} == \
        {k: (v["all"], v["boxes"]) for k, v in rows.items()}
