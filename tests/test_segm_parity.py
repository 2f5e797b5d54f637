"""
segm parity with lvis-api when a predicted mask is empty.

lvis-api leaves out every result of area 0: ``LVISEval._prepare`` takes the detections through
``LVIS.get_ann_ids(img_ids, cat_ids)``, which keeps ``area > 0`` only (after ``LVISResults``' cap
of 300 per image). hotcoco's LVIS mode, like pycocotools' ``COCOeval``, keeps such a detection
and counts it as a false positive. A mask R-CNN outputs empty masks (no pasted pixel >= 0.5),
a few per thousand detections, so hotcoco alone reads a lower AP, AP50, AP75, APs and APr/c/f
(APm, APl and AR are unchanged: area 0 is outside their ranges, recall is unchanged). The
evaluator drops the detections with an empty mask from the segm stream.
"""
import contextlib
import copy
import io
import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import MetadataCatalog
from detectron2.evaluation import LVISEvaluator
from detectron2.structures import Boxes, Instances

from projects_lda.evaluation import LVIS_METRICS, HotcocoLVISEvaluator
from projects_lda.evaluation.synthetic import index_by_image, make_detections, make_lvis_like_gt

H = W = 10
SQUARE = [2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0]  # rasterises to the 6 x 6 pixels [2, 8)


def _minimal_gt():
    """One 10 x 10 image, one object (a square polygon) of the one category."""
    return {
        "images": [{"id": 1, "height": H, "width": W, "neg_category_ids": [],
                    "not_exhaustive_category_ids": [], "file_name": "1.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2.0, 2.0, 6.0, 6.0],
                         "area": 36.0, "iscrowd": 0, "segmentation": [SQUARE]}],
        "categories": [{"id": 1, "name": "a", "synset": "a.n.01", "frequency": "f",
                        "image_count": 1, "instance_count": 1}],
        "info": {}, "licenses": [],
    }


def _square_mask():
    m = mask_util.decode(mask_util.merge(mask_util.frPyObjects([SQUARE], H, W))).astype(bool)
    assert m.sum() == 36 and m[2:8, 2:8].all()
    return m


# the minimal case: an empty mask scored above the exact mask of the object
MINIMAL_DETECTIONS = ((0.9, "empty"), (0.5, "object"))


def _register(name, gt, tmp_path):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(gt))
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(json_file=str(path), evaluator_type="lvis",
                                  thing_classes=[c["name"] for c in gt["categories"]])
    return path


def _run(evaluator, outputs):
    evaluator.reset()
    for inp, out in outputs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


def _quiet(fn, *args):
    """Calls ``fn`` with the C-level stdout silenced (hotcoco's summarize prints from Rust)."""
    import sys

    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(*args)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def test_libraries_disagree_on_an_empty_mask(tmp_path):
    """The cause, with the libraries alone: lvis-api drops the empty detection (AP 1), hotcoco's
    LVIS mode and pycocotools' COCOeval count it as a false positive ranked first (AP 1/2)."""
    import hotcoco
    from lvis import LVIS, LVISEval, LVISResults
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = _minimal_gt()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    masks = {"empty": np.zeros((H, W), bool), "object": _square_mask()}
    rows = []
    for score, kind in MINIMAL_DETECTIONS:
        rle = mask_util.encode(np.asfortranarray(masks[kind].astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        rows.append({"image_id": 1, "category_id": 1, "score": score, "segmentation": rle})
    # both libraries encode the same RLEs and see the same areas (0 and 36)
    for row, (_, kind) in zip(rows, MINIMAL_DETECTIONS):
        assert hotcoco.mask.encode(masks[kind])["counts"].decode() == row["segmentation"]["counts"]
    assert [int(mask_util.area(r["segmentation"])) for r in rows] == [0, 36]

    lvis_gt = LVIS(str(path))
    ev = LVISEval(lvis_gt, LVISResults(lvis_gt, copy.deepcopy(rows)), "segm")
    _quiet(ev.run)
    assert ev.results["AP"] == pytest.approx(1.0, abs=1e-12)
    assert ev.results["AR@300"] == 1.0
    assert [d["id"] for d in ev._dts[1, 1]] == [2]  # the area-0 result (id 1) is gone

    stream = hotcoco.StreamingEval(gt["categories"], "segm", lvis_style=True)
    stream.update(gt["images"], gt["annotations"], copy.deepcopy(rows))
    hot = stream.finalize()
    hot.accumulate()
    _quiet(hot.summarize)
    assert hot.get_results()["AP"] == pytest.approx(0.5, abs=1e-12)  # precision 1/2 at recall 1
    assert hot.get_results()["AR@300"] == 1.0

    coco_gt = _quiet(COCO, str(path))
    coco = COCOeval(coco_gt, _quiet(coco_gt.loadRes, copy.deepcopy(rows)), "segm")
    _quiet(lambda: (coco.evaluate(), coco.accumulate(), coco.summarize()))
    assert coco.stats[0] == pytest.approx(0.5, abs=1e-12)


def _minimal_outputs():
    masks = {"empty": np.zeros((H, W), bool), "object": _square_mask()}
    inst = Instances((H, W))
    inst.pred_boxes = Boxes(torch.tensor([[2.0, 2.0, 8.0, 8.0]] * len(MINIMAL_DETECTIONS)))
    inst.scores = torch.tensor([s for s, _ in MINIMAL_DETECTIONS], dtype=torch.float32)
    inst.pred_classes = torch.zeros(len(MINIMAL_DETECTIONS), dtype=torch.long)
    inst.pred_masks = torch.from_numpy(np.stack([masks[k] for _, k in MINIMAL_DETECTIONS]))
    return [({"image_id": 1}, {"instances": inst})]


def test_evaluator_drops_an_empty_mask_as_lvis_api(tmp_path):
    _register("segm_parity_minimal", _minimal_gt(), tmp_path)
    outputs = _minimal_outputs()
    ours = _run(HotcocoLVISEvaluator("segm_parity_minimal", tasks=("segm",)), outputs)["segm"]
    ref = _run(LVISEvaluator("segm_parity_minimal", tasks=("segm",)), outputs)["segm"]
    assert ref["AP"] == pytest.approx(100.0, abs=1e-9)
    for k in LVIS_METRICS:
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k  # was AP 50 without the drop


def test_parity_with_empty_masks_on_a_synthetic_set(tmp_path):
    """A small synthetic set whose masks are emptied at random (5%); every metric of both tasks
    equal to lvis-api's."""
    gt = make_lvis_like_gt(8, 12, seed=3, image_size=(64, 80), instances_per_image=4,
                           neg_per_image=4)
    _register("segm_parity_synthetic", gt, tmp_path)
    index_by_image(gt)
    rng = np.random.default_rng(0)
    outputs, relevant_empty = [], 0
    for img in gt["images"]:
        inst = make_detections(gt, img, 60, seed=2, score_decimals=2)
        empty = torch.from_numpy(rng.random(len(inst)) < 0.05)
        inst.pred_masks[empty] = False
        checked = {a["category_id"] for a in gt["_by_image"][img["id"]]} \
            | set(img["neg_category_ids"])
        relevant_empty += sum(int(c) + 1 in checked for c in inst.pred_classes[empty])
        outputs.append(({"image_id": img["id"]}, {"instances": inst}))
    assert relevant_empty >= 3  # empty masks that lvis-api leaves out and hotcoco would count
    ours = _run(HotcocoLVISEvaluator("segm_parity_synthetic"), outputs)
    ref = _run(LVISEvaluator("segm_parity_synthetic"), outputs)
    for task in ("bbox", "segm"):
        for k in LVIS_METRICS:
            assert ours[task][k] == pytest.approx(ref[task][k], abs=1e-9), (task, k)
    assert ours["segm"]["AP"] > 1.0
