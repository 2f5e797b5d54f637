"""
projects_lda.evaluation.analysis on the synthetic LVIS-shaped set: the evaluation of a results
JSON equals the streamed evaluator's, per-class AP, TIDE, group confusions on a hand-made case,
and bootstrap differences.
"""
import copy
import json

import pytest
import torch
from test_evaluation import _register, _run, _synthetic_outputs

from projects_lda.evaluation import LVIS_METRICS, HotcocoLVISEvaluator
from projects_lda.evaluation.analysis import (
    TIDE_ERRORS, bootstrap_difference, evaluate_results, group_confusions, per_class_ap,
    tide_breakdown)
from projects_lda.evaluation.synthetic import make_lvis_like_gt


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("analysis")
    gt = make_lvis_like_gt(16, 30, seed=2, image_size=(120, 160), instances_per_image=4)
    path = _register("analysis_lvis_val", gt, tmp)
    good = _synthetic_outputs(copy.deepcopy(gt))
    # a worse model: the same detections with their scores shuffled within each image
    gen = torch.Generator().manual_seed(0)
    worse = []
    for inp, out in good:
        inst = copy.deepcopy(out["instances"])
        inst.scores = inst.scores[torch.randperm(len(inst), generator=gen)]
        worse.append((inp, {"instances": inst}))
    files = {}
    for name, outputs in (("good", good), ("worse", worse)):
        ev = HotcocoLVISEvaluator("analysis_lvis_val", output_dir=str(tmp / name),
                                  write_results_json=True)
        files[name] = (_run(ev, outputs), tmp / name / "lvis_instances_results.json")
    return {"gt": gt, "path": path, "files": files}


def test_results_json_evaluation_equals_the_evaluator(runs):
    for task in ("bbox", "segm"):
        res, results_json = runs["files"]["good"]
        gt, ev = evaluate_results(runs["path"], results_json, task)
        stats = ev.get_results()
        for k in LVIS_METRICS:
            assert 100 * stats[k] == pytest.approx(res[task][k], abs=1e-9), (task, k)
        ap = per_class_ap(gt, ev)
        annotated = {a["category_id"] for a in runs["gt"]["annotations"]}
        assert set(ap) == annotated  # categories without ground truth have no AP
        assert all(0.0 <= v <= 100.0 for v in ap.values())


def test_tide_breakdown(runs):
    _, ev = evaluate_results(runs["path"], runs["files"]["good"][1], "bbox")
    t = tide_breakdown(ev)
    assert t["ap50"] == pytest.approx(100 * ev.get_results()["AP50"], abs=1e-6)
    assert set(t["delta_ap"]) == set(TIDE_ERRORS) == set(t["counts"])
    assert all(v >= 0 for v in t["delta_ap"].values())
    assert t["counts"]["Bkg"] > 0 and t["counts"]["Loc"] > 0  # jittered and random boxes


def test_group_confusions_by_hand(tmp_path):
    """Three objects of classes 1, 2, 4 (groups {1, 2, 3}, {4, 5, 6}); detections: class 2 on
    the first (a sibling), class 2 on the second (own), class 1 on the third (other group)."""
    cats = [{"id": i, "name": f"g{(i - 1) // 3}_{i}", "frequency": "f"} for i in range(1, 7)]
    boxes = [[0, 0, 10, 10], [20, 20, 10, 10], [40, 40, 10, 10]]
    gt = {"images": [{"id": 1, "height": 64, "width": 64, "neg_category_ids": [3, 5, 6],
                      "not_exhaustive_category_ids": []}],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b,
                           "area": 100.0, "iscrowd": 0}
                          for i, (c, b) in enumerate(zip((1, 2, 4), boxes))],
          "categories": cats}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    dets = [{"image_id": 1, "category_id": c, "bbox": b, "score": 0.9}
            for c, b in zip((2, 2, 1), boxes)]
    _, ev = evaluate_results(path, dets, "bbox")
    g = group_confusions(ev, lambda cid: (cid - 1) // 3)
    assert g == pytest.approx({"own_class": 100 / 3, "group_sibling": 100 / 3,
                               "other_group": 100 / 3, "missed": 0.0})


def test_bootstrap_difference(runs):
    _, good = evaluate_results(runs["path"], runs["files"]["good"][1], "bbox")
    _, good2 = evaluate_results(runs["path"], runs["files"]["good"][1], "bbox")
    _, worse = evaluate_results(runs["path"], runs["files"]["worse"][1], "bbox")
    same = bootstrap_difference(good, good2, n_bootstrap=200)
    assert same["AP"] == pytest.approx((0.0, 0.0, 0.0))
    d = bootstrap_difference(good, worse, n_bootstrap=200)
    expected = runs["files"]["worse"][0]["bbox"]["AP"] - runs["files"]["good"][0]["bbox"]["AP"]
    assert d["AP"][0] == pytest.approx(expected, abs=1e-6)
    assert d["AP"][1] <= d["AP"][0] <= d["AP"][2] and d["AP"][2] < 0  # shuffled scores hurt
