"""
The hotcoco LVIS evaluator against detectron2's LVISEvaluator (lvis-api) on a synthetic
LVIS-shaped set that exercises the federated rules, with the same model outputs fed to both;
the detection selection against lvis-api's own cap; errors on bad input; two gloo processes.
"""
import copy
import functools
import json

import numpy as np
import pytest
import torch
from conftest import run_gloo_workers

from detectron2.data import MetadataCatalog
from detectron2.evaluation import LVISEvaluator

from projects_lda import get_project_cfg
from projects_lda.evaluation import LVIS_METRICS, HotcocoLVISEvaluator, build_evaluator
from projects_lda.evaluation.lvis_evaluation import select_detections
from projects_lda.evaluation.synthetic import index_by_image, make_detections, make_lvis_like_gt

NUM_IMAGES = 24
NUM_CATEGORIES = 40
IMAGE_SIZE = (160, 208)


def _synthetic_outputs(gt):
    """Model outputs of every image: 300 detections, 360 on every 5th image (over the cap),
    none on every 7th; scores rounded to 2 decimals (ties)."""
    index_by_image(gt)
    outputs = []
    for img in gt["images"]:
        n = 0 if img["id"] % 7 == 0 else (360 if img["id"] % 5 == 0 else 300)
        outputs.append(({"image_id": img["id"]},
                        {"instances": make_detections(gt, img, n, seed=1, score_decimals=2)}))
    del gt["_by_image"]
    return outputs


def _register(name, gt, tmp_path):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(gt))
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(
        json_file=str(path), evaluator_type="lvis",
        thing_classes=[c["name"] for c in gt["categories"]])
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synthetic_lvis")
    gt = make_lvis_like_gt(NUM_IMAGES, NUM_CATEGORIES, seed=5, image_size=IMAGE_SIZE,
                           instances_per_image=5, neg_per_image=6)
    path = _register("synthetic_lvis_val", gt, tmp)
    return {"gt": gt, "path": path, "outputs": _synthetic_outputs(copy.deepcopy(gt)), "tmp": tmp}


def _run(evaluator, outputs):
    evaluator.reset()
    for inp, out in outputs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


def test_synthetic_set_exercises_the_federated_rules(synthetic):
    gt, outputs = synthetic["gt"], synthetic["outputs"]
    annotated = {a["category_id"] for a in gt["annotations"]}
    assert len(annotated) < NUM_CATEGORIES  # categories without ground truth in this split
    assert any(img["not_exhaustive_category_ids"] for img in gt["images"])
    counts = [len(out["instances"]) for _, out in outputs]
    assert 0 in counts and max(counts) > 300
    # most detections are of categories the image was never checked for
    irrelevant = total = 0
    for img, (_, out) in zip(gt["images"], outputs):
        pos = {a["category_id"] for a in gt["annotations"] if a["image_id"] == img["id"]}
        checked = torch.tensor(sorted(pos | set(img["neg_category_ids"])))
        cats = out["instances"].pred_classes + 1
        irrelevant += int((~torch.isin(cats, checked)).sum())
        total += len(cats)
    assert irrelevant > total / 2


def _all_lvis_metrics(gt_path, outputs, task, max_dets):
    """lvis-api's full result dict (AP, AR and the rest) on the outputs, as detectron2 feeds it."""
    from detectron2.evaluation.coco_evaluation import instances_to_coco_json
    from lvis import LVIS, LVISEval, LVISResults

    rows = []
    for inp, out in outputs:
        for r in instances_to_coco_json(out["instances"], inp["image_id"]):
            r["category_id"] += 1
            if task == "segm":
                r.pop("bbox")
            rows.append(r)
    lvis_gt = LVIS(str(gt_path))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, rows, max_dets=max_dets), task)
    ev.run()
    return {k: float(v) for k, v in ev.get_results().items()}


def test_parity_with_lvis_api_on_the_synthetic_set(synthetic, tmp_path):
    outputs = synthetic["outputs"]
    ours = _run(HotcocoLVISEvaluator("synthetic_lvis_val", output_dir=str(tmp_path / "hot"),
                                     max_dets_per_image=300), outputs)
    ref = _run(LVISEvaluator("synthetic_lvis_val", max_dets_per_image=300), outputs)
    assert sorted(ours) == sorted(ref) == ["bbox", "segm"]
    for task in ("bbox", "segm"):
        assert list(ours[task]) == list(LVIS_METRICS)
        for k in LVIS_METRICS:
            assert ours[task][k] == pytest.approx(ref[task][k], abs=1e-4), (task, k)  # percent
        for k in ("AP", "APs", "APm", "APl", "APr", "APc", "APf"):  # neither empty nor trivial
            assert 1.0 < ours[task][k] < 95.0, (task, k)
        # every metric of lvis-api (AR as well), from the per-category results file
        saved = json.loads((tmp_path / "hot" / f"lvis_eval_{task}.json").read_text())
        full = _all_lvis_metrics(synthetic["path"], outputs, task, 300)
        assert set(full) <= set(saved["metrics"])
        for k, v in full.items():
            assert saved["metrics"][k] == pytest.approx(v, abs=1e-6), (task, k)
        assert len(saved["per_class"]) > 0


def test_detections_per_image_cap_as_lvis_api(synthetic, tmp_path):
    """TEST.DETECTIONS_PER_IMAGE = 50: the top 50 by score per image, ties in the model's order."""
    outputs = synthetic["outputs"]
    ours = _run(HotcocoLVISEvaluator("synthetic_lvis_val", max_dets_per_image=50,
                                     tasks=("bbox",)), outputs)
    ref = _all_lvis_metrics(synthetic["path"], outputs, "bbox", 50)
    for k in LVIS_METRICS:
        assert ours["bbox"][k] == pytest.approx(ref[k] * 100, abs=1e-4), k


def test_select_detections_is_lvis_apis_cap():
    from lvis import LVISResults

    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.9, 0.5, 0.3])
    classes = torch.tensor([1, 2, 3, 1, 2, 9, 3])
    top, kept = select_detections(scores, classes, 4, relevant=torch.tensor([1, 2]))
    # the four best: both 0.9, then the first two of the three 0.5 (index order), in index order
    assert top.tolist() == [0, 1, 2, 4]
    assert kept.tolist() == [0, 1, 4]
    anns = [{"image_id": 1, "score": float(s), "k": i} for i, s in enumerate(scores)]
    limited = LVISResults.limit_dets_per_image(None, anns, 4)
    assert sorted(a["k"] for a in limited) == top.tolist()
    assert select_detections(scores, classes, -1, torch.tensor([3]))[1].tolist() == [2, 6]


def test_empty_and_missing_images_count_as_missed(synthetic, tmp_path):
    """Images no process predicted count for lvis-api: their ground truth is missed."""
    outputs = synthetic["outputs"][: NUM_IMAGES // 2]
    ours = _run(HotcocoLVISEvaluator("synthetic_lvis_val", tasks=("bbox",)), outputs)
    ref = _all_lvis_metrics(synthetic["path"], outputs, "bbox", 300)
    for k in LVIS_METRICS:
        assert ours["bbox"][k] == pytest.approx(ref[k] * 100, abs=1e-4), k
    # no image with a detection at all: AP 0 (lvis-api cannot load an empty result list)
    empty = [(inp, {"instances": out["instances"][:0]}) for inp, out in synthetic["outputs"]]
    res = _run(HotcocoLVISEvaluator("synthetic_lvis_val"), empty)
    assert res["bbox"]["AP"] == 0.0 and list(res) == ["bbox"]


def test_bad_input_is_named(synthetic):
    inp, out = synthetic["outputs"][0]
    ev = HotcocoLVISEvaluator("synthetic_lvis_val")
    with pytest.raises(ValueError, match="image_id 99999 is not an image of 'synthetic_lvis_val'"):
        ev.process([{"image_id": 99999}], [out])
    bad = copy.deepcopy(out["instances"])
    bad.pred_classes[3] = NUM_CATEGORIES
    with pytest.raises(ValueError, match=f"image 1: predicted class {NUM_CATEGORIES} has no "
                       "category in 'synthetic_lvis_val'"):
        ev.process([inp], [{"instances": bad}])
    MetadataCatalog.get("synthetic_no_json").set(evaluator_type="lvis")
    with pytest.raises(ValueError, match="'synthetic_no_json': its metadata has no json_file"):
        HotcocoLVISEvaluator("synthetic_no_json")
    cfg = get_project_cfg()
    cfg.TEST.LVIS_EVAL.BACKEND = "lvis"
    with pytest.raises(ValueError, match="TEST.LVIS_EVAL.BACKEND: unknown backend 'lvis'"):
        build_evaluator(cfg, "synthetic_lvis_val", "unused")


def test_results_json_is_opt_in(synthetic, tmp_path):
    outputs = synthetic["outputs"][:6]
    _run(HotcocoLVISEvaluator("synthetic_lvis_val", output_dir=str(tmp_path / "off")), outputs)
    assert not (tmp_path / "off" / "lvis_instances_results.json").exists()
    assert (tmp_path / "off" / "evaluation_timing.json").is_file()
    _run(HotcocoLVISEvaluator("synthetic_lvis_val", output_dir=str(tmp_path / "on"),
                              write_results_json=True), outputs)
    rows = json.loads((tmp_path / "on" / "lvis_instances_results.json").read_text())
    # every detection under the cap, whatever its category, in the server's format
    assert len(rows) == sum(min(300, len(out["instances"])) for _, out in outputs)
    assert set(rows[0]) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert min(r["category_id"] for r in rows) >= 1


# ------------------------------------------------------------------------------ two processes
def _half_on_each_rank(gt_path, rank):
    gt = json.loads(open(gt_path).read())
    MetadataCatalog.get("synthetic_lvis_val").set(json_file=gt_path, evaluator_type="lvis")
    outputs = _synthetic_outputs(gt)
    ev = HotcocoLVISEvaluator("synthetic_lvis_val")
    ev.reset()
    for inp, out in outputs[rank::2]:  # as detectron2's InferenceSampler: disjoint shards
        ev.process([inp], [out])
    return ev.evaluate()


def test_two_gloo_processes_equal_one(synthetic):
    one = _run(HotcocoLVISEvaluator("synthetic_lvis_val"), synthetic["outputs"])
    results = run_gloo_workers(functools.partial(_half_on_each_rank, str(synthetic["path"])))
    assert results[1] is None
    for task in ("bbox", "segm"):
        for k in LVIS_METRICS:
            assert results[0][task][k] == pytest.approx(one[task][k], abs=1e-9), (task, k)


def test_synthetic_gt_has_lvis_shape():
    gt = make_lvis_like_gt(50, 1203, seed=0)
    freq = [c["frequency"] for c in gt["categories"]]
    assert (freq.count("r"), freq.count("c"), freq.count("f")) == (337, 461, 405)
    per_image = len(gt["annotations"]) / 50
    assert 9 < per_image < 16
    assert np.mean([len(i["neg_category_ids"]) for i in gt["images"]]) > 5


def test_dataset_without_annotations_writes_the_results_json(synthetic, tmp_path):
    """A test set (no annotations): nothing to evaluate, the server's JSON is written anyway."""
    gt = dict(synthetic["gt"], annotations=[])
    _register("synthetic_lvis_test", gt, tmp_path)
    outputs = synthetic["outputs"][:3]
    res = _run(HotcocoLVISEvaluator("synthetic_lvis_test", output_dir=str(tmp_path / "test")),
               outputs)
    assert res == {}
    rows = json.loads((tmp_path / "test" / "lvis_instances_results.json").read_text())
    assert len(rows) == sum(min(300, len(out["instances"])) for _, out in outputs)
