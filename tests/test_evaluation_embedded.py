"""
Parity on real predictions: a detector trained briefly on the embedded dataset (the tiny version
of the test fixtures) predicts its validation images once, and both evaluators, hotcoco's and
detectron2's LVISEvaluator (lvis-api), read the same outputs; bbox and segm. AP-fixed likewise,
against lvis-api on the top K detections per category without a per-image cap (Dave et al.'s
evaluate_ap_fixed.py).
"""
from collections import defaultdict

import pytest
import torch
from conftest import BASELINE_CONFIG

from detectron2.data import MetadataCatalog
from detectron2.evaluation import LVISEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from projects_lda.evaluation import LVIS_METRICS, HotcocoLVISEvaluator

import train_net  # noqa: E402  (the repository root is put on sys.path by conftest.py)

TRAIN_ITERS = 40
K = 40  # detections per category for AP-fixed: the cut bites on the frequent classes


def _ap_fixed_lvis_api(json_file, image_outputs, task):
    from lvis import LVIS, LVISEval, LVISResults

    by_cat = defaultdict(list)
    for image_id, instances in sorted(image_outputs, key=lambda o: o[0]):
        for r in instances_to_coco_json(instances, image_id):
            r["category_id"] += 1
            if task == "segm":
                r.pop("bbox")
            by_cat[r["category_id"]].append(r)
    rows = [r for anns in by_cat.values()
            for r in sorted(anns, key=lambda a: a["score"], reverse=True)[:K]]
    assert max(len(v) for v in by_cat.values()) > K  # the cut bites
    gt = LVIS(json_file)
    ev = LVISEval(gt, LVISResults(gt, rows, max_dets=-1), task)
    ev.params.max_dets = -1
    ev.run()
    return ev.get_results()


@pytest.mark.timeout(600)
def test_real_predictions_parity(train_args, tmp_path):
    args = train_args(tmp_path, "SOLVER.MAX_ITER", str(TRAIN_ITERS),
                      "SOLVER.CHECKPOINT_PERIOD", "100000", "DATASETS.TEST", "()",
                      "TEST.DETECTIONS_PER_IMAGE", "300", config=BASELINE_CONFIG)
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.train()
    model = trainer.model.eval()
    loader = train_net.Trainer.build_test_loader(cfg, "tiny_embedded_val")
    ours = HotcocoLVISEvaluator("tiny_embedded_val", max_dets_per_image=300)
    ref = LVISEvaluator("tiny_embedded_val", max_dets_per_image=300)
    fixed = HotcocoLVISEvaluator("tiny_embedded_val", metrics=("fixed",), dets_per_category=K)
    image_outputs = []
    for ev in (ours, ref, fixed):
        ev.reset()
    with torch.no_grad():  # one pass of the model; the evaluators read the same outputs
        for inputs in loader:
            outputs = model(inputs)
            for ev in (ours, ref, fixed):
                ev.process(inputs, outputs)
            image_outputs += [(i["image_id"], o["instances"].to("cpu"))
                              for i, o in zip(inputs, outputs)]
    ours, ref, fixed = ours.evaluate(), ref.evaluate(), fixed.evaluate()
    json_file = MetadataCatalog.get("tiny_embedded_val").json_file
    for task in ("bbox", "segm"):
        expected = _ap_fixed_lvis_api(json_file, image_outputs, task)
        for k in LVIS_METRICS:
            assert fixed[task][f"{k}-fixed"] == pytest.approx(expected[k] * 100, abs=1e-4), \
                (task, k)
    for task in ("bbox", "segm"):
        for k in LVIS_METRICS:
            assert ours[task][k] == pytest.approx(ref[task][k], abs=1e-4), (task, k)  # percent
        assert ours[task]["AP50"] > 1.0, ours  # a trained detector, not noise
