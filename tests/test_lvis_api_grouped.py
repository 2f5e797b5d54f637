"""lvis-api a group of categories at a time (the reference at LVIS v1 val size) gives exactly the
numbers of one LVISEval over all categories: bbox and segm, a federated set with ties."""
import copy
import json

import pytest
from conftest import relabel_rare

from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from projects_lda.evaluation.lvis_api_grouped import lvis_eval_by_category_group
from projects_lda.evaluation.synthetic import make_detections, make_lvis_like_gt


@pytest.fixture(scope="module")
def gt_and_rows(tmp_path_factory):
    gt = make_lvis_like_gt(24, 40, seed=5, image_size=(96, 128), instances_per_image=6,
                           neg_per_image=6)
    relabel_rare(gt, 5)  # so that APr counts
    rows = []
    for img in gt["images"]:
        n = 0 if img["id"] % 7 == 0 else 60  # some images without detections
        inst = make_detections(gt, img, n, seed=3, score_decimals=2)  # ties
        for r in instances_to_coco_json(inst, img["id"]):
            r["category_id"] += 1
            rows.append(r)
    path = tmp_path_factory.mktemp("grouped") / "val.json"
    path.write_text(json.dumps(gt))
    return str(path), rows


def _results(path, rows, task, group_size=None):
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(path)
    rows = copy.deepcopy(rows)
    if task == "segm":
        for r in rows:
            r.pop("bbox")
    dt = LVISResults(gt, rows, max_dets=50)  # the per-image cap binds on most images
    if group_size is None:
        ev = LVISEval(gt, dt, task)
        ev.run()
    else:
        ev = lvis_eval_by_category_group(gt, dt, task, group_size=group_size)
    return ev.get_results()


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_groups_give_one_run_numbers_exactly(gt_and_rows, task):
    path, rows = gt_and_rows
    whole = _results(path, rows, task)
    assert 0 < whole["AP"] < 1 and all(whole[k] > 0 for k in ("APr", "APc", "APf"))
    for size in (1, 7, 40):  # one category at a time, uneven groups, all at once
        assert _results(path, rows, task, size) == whole, size


def test_bad_group_size_is_named(gt_and_rows):
    path, rows = gt_and_rows
    with pytest.raises(ValueError, match="group_size must be at least 1, got 0"):
        _results(path, rows, "bbox", 0)
