"""
A user's own COCO file, hardened: one exhaustive / federated rule on every path, COCO's protocol
equal to pycocotools' COCOeval, compressed RLE without ``area``, the test set's categories
checked against the model's, malformed annotations refused at load (and a seeded fuzz of a valid
file), results files checked before they are scored, and the demo's image ids taken from an
annotation file. Everything runs on hand-made files in ``tmp_path`` (no training).
"""
import contextlib
import copy
import io
import json
import logging

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from projects_lda.data import datasets as ds
from projects_lda.data.validation import AnnotationFileError

H, W = 96, 128  # every image of the crafted file
# file category ids out of order, 55 listed without objects
CATEGORIES = [(42, "cup"), (7, "plate"), (13, "fork"), (99, "knife"), (55, "spoon")]
IMAGE_IDS = list(range(1000, 1016))


def _rect_mask(x, y, w, h, size=(H, W)):
    m = np.zeros(size, dtype=np.uint8)
    m[y:y + h, x:x + w] = 1
    return m


def _uncompressed(mask):
    flat = mask.flatten(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs}


def _compressed(mask):
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask))
    return {"size": list(mask.shape), "counts": rle["counts"].decode()}


# per image: (category id, x, y, w, h) of its objects; sizes cover COCO's small (< 32^2),
# medium and large (> 96^2) areas
_OBJECTS = [
    [(42, 4, 2, 110, 90), (7, 10, 10, 20, 20)],
    [(7, 5, 5, 40, 30), (13, 60, 40, 12, 10)],
    [(13, 20, 20, 50, 40), (99, 80, 10, 30, 60)],
    [(99, 2, 2, 16, 16), (42, 40, 30, 60, 50)],
] * 4


def crafted_file(path, lists=None):
    """
    The crafted exhaustive COCO file: 16 images (ids 1000..1015, named ``img_<id>.png``), the
    categories above, polygons, compressed and uncompressed RLE, a crowd region on every 4th
    image, no ``area``. ``lists``: None (no LVIS keys), "empty" (both keys, empty lists on
    every image) or "filled" (every category an image does not annotate as negative).
    """
    images, anns = [], []
    for k, (iid, objects) in enumerate(zip(IMAGE_IDS, _OBJECTS)):
        img = {"id": iid, "file_name": f"img_{iid}.png", "height": H, "width": W}
        present = {c for c, *_ in objects}
        if lists == "empty":
            img.update(neg_category_ids=[], not_exhaustive_category_ids=[])
        elif lists == "filled":
            img.update(neg_category_ids=[c for c, _ in CATEGORIES if c not in present],
                       not_exhaustive_category_ids=[])
        images.append(img)
        for j, (c, x, y, w, h) in enumerate(objects):
            n = len(anns)
            if n % 3 == 0:
                segm = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            elif n % 3 == 1:
                segm = _compressed(_rect_mask(x, y, w, h))
            else:
                segm = _uncompressed(_rect_mask(x, y, w, h))
            anns.append({"id": n + 1, "image_id": iid, "category_id": c,
                         "bbox": [x, y, w, h], "segmentation": segm, "iscrowd": 0})
        if k % 4 == 1:  # a crowd region over the image's right part
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 7,
                         "bbox": [90, 50, 30, 40], "iscrowd": 1,
                         "segmentation": _uncompressed(_rect_mask(90, 50, 30, 40))})
    cats = [{"id": c, "name": n, "supercategory": "kitchen"} for c, n in CATEGORIES]
    data = {"images": images, "annotations": anns, "categories": cats}
    path.write_text(json.dumps(data))
    return data


def crafted_detections():
    """
    {image id: [(x, y, w, h, score, category id)]}, integer boxes: per object a true detection,
    a shifted duplicate and one of another class; background boxes; empty boxes of high score
    (COCOeval counts them, LVIS leaves them out); on the first image 320 high-score boxes of
    one class before the true detection of its large object (LVIS's 300 per image drop it,
    COCO's 100 per image and class keep it).
    """
    rng = np.random.default_rng(0)
    out = {}
    for k, (iid, objects) in enumerate(zip(IMAGE_IDS, _OBJECTS)):
        rows = []
        for c, x, y, w, h in objects:
            rows.append((x + int(rng.integers(-2, 3)), y + int(rng.integers(-2, 3)), w, h,
                         round(float(rng.uniform(0.5, 1.0)), 4), c))
            rows.append((x + w // 3, y, w, h, round(float(rng.uniform(0.2, 0.6)), 4), c))
            rows.append((x, y, w, h, round(float(rng.uniform(0.1, 0.7)), 4),
                         int(rng.choice([55, 99, 13]))))
        for _ in range(3):
            bx, by = int(rng.integers(0, W - 20)), int(rng.integers(0, H - 20))
            rows.append((bx, by, 15, 12, round(float(rng.uniform(0.0, 0.5)), 4),
                         int(rng.choice([c for c, _ in CATEGORIES]))))
        if k % 2 == 0:
            rows.append((30, 30, 0, 10, 0.99, objects[0][0]))  # empty
        if k == 0:
            junk = [(int(rng.integers(0, 60)), int(rng.integers(0, 60)), 8, 8,
                     round(0.95 - 0.0001 * i, 4), 7) for i in range(320)]
            rows = junk + [r if r[5] != 42 else r[:4] + (0.05, 42) for r in rows]
        out[iid] = rows
    return out


def _results_rows(dets):
    """The detections as a results file, masks the boxes' rectangles."""
    from pycocotools import mask as mask_util

    rows = []
    for iid, rs in dets.items():
        for x, y, w, h, score, c in rs:
            rle = mask_util.encode(np.asfortranarray(_rect_mask(x, y, w, h)))
            rle["counts"] = rle["counts"].decode()
            rows.append({"image_id": iid, "category_id": c, "bbox": [x, y, w, h],
                         "score": score, "segmentation": rle})
    return rows


def _cocoeval(path, rows, task):
    """pycocotools' COCOeval of ``rows`` on the file, areas as pycocotools computes them."""
    from pycocotools import mask as mask_util
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    drop = "bbox" if task == "segm" else "segmentation"
    rows = [{k: v for k, v in r.items() if k != drop} for r in rows]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        for a in gt.dataset["annotations"]:
            a["area"] = float(mask_util.area(gt.annToRLE(a)))
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(rows)), task)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), 100 * ev.stats[:6]))


_NAMES = iter(range(10**6))


def _register(path, **kwargs):
    name = f"checks_{next(_NAMES)}"
    ds.register_lvis_format(name, str(path), str(path.parent), check_images=False, **kwargs)
    DatasetCatalog.get(name)  # as the test loader does before the evaluator
    return name


def _evaluate(name, dets, tasks=("bbox", "segm"), **kwargs):
    """The evaluator on the detections (boxes and their rectangles as masks)."""
    from detectron2.structures import Boxes, Instances

    from projects_lda.evaluation import HotcocoLVISEvaluator

    to_contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    if "model_classes" in kwargs:
        to_contiguous = {i: k for k, i in enumerate(kwargs["model_classes"].dataset_ids)}
    ev = HotcocoLVISEvaluator(name, tasks=tasks, distributed=False, **kwargs)
    for iid, rows in dets.items():
        r = torch.tensor([row[:4] for row in rows], dtype=torch.float32)
        inst = Instances((H, W))
        inst.pred_boxes = Boxes(torch.cat([r[:, :2], r[:, :2] + r[:, 2:4]], 1))
        inst.scores = torch.tensor([row[4] for row in rows])
        inst.pred_classes = torch.tensor([to_contiguous[row[5]] for row in rows])
        inst.pred_masks = torch.stack([torch.from_numpy(_rect_mask(*map(int, row[:4]))).bool()
                                       for row in rows])
        ev.process([{"image_id": iid}], [{"instances": inst}])
    return ev, ev.evaluate()


# ----------------------------------------------------------------------- protocols
def test_coco_protocol_equals_cocoeval_where_lvis_differs(tmp_path):
    """On the crafted file and detections, the COCO protocol (evaluator and report tool) gives
    pycocotools' COCOeval's six numbers; the LVIS protocol differs (300 per image over all
    classes, empty detections left out)."""
    from projects_lda.evaluation.report import main as eval_report

    path = tmp_path / "val.json"
    crafted_file(path)
    dets = crafted_detections()
    rows = _results_rows(dets)
    name = _register(path)
    _, coco = _evaluate(name, dets, protocol="coco", output_dir=str(tmp_path / "coco"),
                        write_results_json=True)
    _, lvis = _evaluate(name, dets, output_dir=str(tmp_path / "lvis"), write_results_json=True)
    for task in ("bbox", "segm"):
        ref = _cocoeval(path, rows, task)
        assert coco[task] == pytest.approx(ref, abs=1e-9), task
        # the large cup of the first image is below 300 boxes of another class: LVIS's cap
        # drops its only detection; empty detections are COCOeval's false positives only
        assert lvis[task]["APl"] < ref["APl"] - 10 and abs(lvis[task]["AP"] - ref["AP"]) > 1
    # the report tool on the evaluator's own results: COCO's numbers again, and the LVIS ones
    results = str(tmp_path / "coco" / "lvis_instances_results.json")
    again = eval_report(["--gt", str(path), "--results", results, "--protocol", "coco",
                         "--out", str(tmp_path / "report")])[results]
    assert again["protocol"] == "coco"
    for task in ("bbox", "segm"):
        assert again["tasks"][task]["summary"] == pytest.approx(coco[task], abs=1e-9)
    assert "AP: COCO protocol (pycocotools' COCOeval" in \
        (tmp_path / "report" / "report.md").read_text()
    results = str(tmp_path / "lvis" / "lvis_instances_results.json")
    again = eval_report(["--gt", str(path), "--results", results, "--out",
                         str(tmp_path / "report_lvis")])[results]
    for task in ("bbox", "segm"):
        summary = again["tasks"][task]["summary"]
        assert {k: summary[k] for k in lvis[task]} == pytest.approx(lvis[task], abs=1e-9)


def test_coco_protocol_refuses_a_federated_file(tmp_path):
    path = tmp_path / "fed.json"
    crafted_file(path, lists="filled")
    name = _register(path)
    with pytest.raises(ValueError, match=f"dataset '{name}' \\({path}\\) is federated"):
        _evaluate(name, {}, protocol="coco")


# ----------------------------------------------------------------------- one rule
@pytest.mark.parametrize("lists,federated", [(None, False), ("empty", False), ("filled", True)])
def test_one_exhaustive_or_federated_rule(tmp_path, caplog, lists, federated):
    """Loader, evaluator, report and results-file evaluation agree; a file with LVIS's lists
    but not one negative is exhaustive, with the warning."""
    from projects_lda.evaluation.ground_truth import load_ground_truth
    from projects_lda.evaluation.report import write_evaluation_report

    path = tmp_path / "val.json"
    crafted_file(path, lists=lists)
    dets = crafted_detections()
    with caplog.at_level(logging.INFO):
        name = _register(path)
        ev, res = _evaluate(name, dets, tasks=("bbox",), output_dir=str(tmp_path / "out"),
                            write_results_json=True)
        report = write_evaluation_report(str(path), _results_rows(dets), str(tmp_path / "r"),
                                         tasks=("bbox",))
    assert MetadataCatalog.get(name).federated is federated
    assert ev._federated is federated
    assert report["federated"] is federated
    assert load_ground_truth(str(path))[1] is federated
    assert report["tasks"]["bbox"]["summary"]["AP"] == pytest.approx(res["bbox"]["AP"], abs=1e-9)
    warning = (f"{path}: 16 of its 16 images carry LVIS's neg_category_ids / "
               "not_exhaustive_category_ids, but no image lists a single verified-negative "
               "category; by LVIS's rules every detection of a class absent from an image would "
               "be ignored. It is evaluated as exhaustive (a detection of a class not annotated "
               "in an image is a false positive, as in COCOeval); register it with ':federated' "
               "(annotations='federated') to evaluate it by LVIS's rules")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (warning in warnings) is (lists == "empty")
    reason = {None: "exhaustive: no image carries LVIS's neg_category_ids",
              "empty": "exhaustive: no image lists a verified-negative category",
              "filled": "federated (LVIS's rules): 16 of its 16 images list verified-negative "
                        "categories (neg_category_ids)"}[lists]
    assert f"{path} is evaluated as {reason}" in caplog.text
    if lists == "empty":  # forced at registration: LVIS's rules, every absent class ignored
        forced = _register(path, annotations="federated")
        ev_forced, res_forced = _evaluate(forced, dets, tasks=("bbox",))
        assert ev_forced._federated is True and res_forced["bbox"]["AP"] > res["bbox"]["AP"] + 1


# ----------------------------------------------------------------------- areas
def test_compressed_rle_without_area_gets_pycocotools_area():
    from pycocotools import mask as mask_util

    from projects_lda.evaluation.ground_truth import with_area

    compressed = _compressed(_rect_mask(3, 4, 10, 20))
    assert with_area({"segmentation": compressed, "bbox": [3, 4, 10, 20]})["area"] == 200.0
    assert with_area({"segmentation": _uncompressed(_rect_mask(0, 0, 5, 7)),
                      "bbox": [0, 0, 5, 7]})["area"] == 35.0
    # a polygon past the image's edge: rasterised on the image's canvas, as annToRLE
    poly = [[100, 80, 140, 80, 140, 100, 100, 100]]
    rle = mask_util.merge(mask_util.frPyObjects(poly, H, W))
    assert with_area({"segmentation": poly, "bbox": [100, 80, 40, 20]}, (H, W))["area"] == \
        float(mask_util.area(rle)) == 28.0 * 16


# ----------------------------------------------------------------------- the model's categories
def test_test_categories_are_checked_against_the_model(tmp_path):
    from projects_lda.data.class_names import ClassNames

    path = tmp_path / "val.json"
    data = crafted_file(path)
    model = ClassNames(["plate", "fork", "cup", "knife"], [7, 13, 42, 99])
    model.source = "the model (training set 'my_train')"
    name = _register(path)
    with pytest.raises(ValueError) as e:
        _evaluate(name, {}, model_classes=model)
    assert str(e.value) == (
        f"{path}: category id 55 ('spoon') is not among the 4 categories of the model (training "
        "set 'my_train'): the model cannot predict it, so its AP would be 0; evaluate on a "
        "file with the model's categories")
    renamed = ClassNames(["plate", "fork", "mug", "knife", "spoon"], [7, 13, 42, 99, 55])
    with pytest.raises(ValueError, match=r"category id 42 is 'cup' there but 'mug' in the model"):
        _evaluate(name, {}, model_classes=renamed)
    # a subset of the model's categories, listed in another order: matched by id, evaluated on
    # its own; perfect detections of its objects and detections of the model's other classes
    sub = dict(data, categories=[c for c in data["categories"] if c["id"] in (99, 7)][::-1],
               annotations=[a for a in data["annotations"] if a["category_id"] in (99, 7)])
    sub_path = tmp_path / "sub.json"
    sub_path.write_text(json.dumps(sub))
    model = ClassNames(["plate", "fork", "cup", "spoon", "knife"], [7, 13, 42, 55, 99])
    perfect = {img["id"]: [] for img in sub["images"]}
    for a in sub["annotations"]:
        if not a["iscrowd"]:
            perfect[a["image_id"]].append((*a["bbox"], 0.9, a["category_id"]))
    for rows in perfect.values():
        rows.append((0, 0, 10, 10, 0.95, 42))  # the model's class the file does not have
    _, res = _evaluate(_register(sub_path), perfect, tasks=("bbox",), model_classes=model)
    assert res["bbox"]["AP"] == pytest.approx(100.0)


def test_build_evaluator_takes_the_model_classes_and_the_protocol_from_the_config(tmp_path):
    from projects_lda.config import get_project_cfg
    from projects_lda.evaluation import build_evaluator
    from projects_lda.evaluation.build import model_classes

    path = tmp_path / "val.json"
    crafted_file(path)
    name = _register(path)
    cfg = get_project_cfg()
    cfg.DATASETS.TRAIN = (name,)
    names = model_classes(cfg)  # no checkpoint: the training set's
    assert (names.dataset_ids, names.source) == \
        ([7, 13, 42, 55, 99], f"the model (training set '{name}')")
    weights = tmp_path / "model.pth"
    torch.save({"model": {}, "class_names": {"thing_classes": ["plate", "fork", "mug"],
                                             "dataset_ids": [7, 13, 42]}}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    assert model_classes(cfg).source == f"the model (checkpoint {weights})"
    with pytest.raises(ValueError, match="category id 42 is 'cup' there but 'mug' in the model "
                       r"\(checkpoint"):
        build_evaluator(cfg, name, str(tmp_path / "out"))
    cfg.MODEL.WEIGHTS = ""
    cfg.TEST.LVIS_EVAL.PROTOCOL = "pascal"
    with pytest.raises(ValueError, match=r"protocol 'pascal': choose one of \('lvis', 'coco'\)"):
        build_evaluator(cfg, name, str(tmp_path / "out"))
    cfg.TEST.LVIS_EVAL.PROTOCOL = "coco"
    assert build_evaluator(cfg, name, str(tmp_path / "out"))._protocol == "coco"


# ----------------------------------------------------------------------- malformed files
def _good(tmp_path):
    return crafted_file(tmp_path / "good.json")


def _mutated(data, where, key, value):
    data = copy.deepcopy(data)
    entry = data[where][0] if where != "top" else data
    if value is _DELETE:
        del entry[key]
    else:
        entry[key] = value
    return data


_DELETE = object()
RLE_COMPRESSED = 1  # index of an annotation with compressed RLE in the crafted file
RLE_UNCOMPRESSED = 2
# the fuzz test's outcome (test_fuzzed_files_load_as_detectron2_or_are_refused)
REFUSED, EQUAL, WARNED = 277, 39, 9


def _refused(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationFileError) as e:
        ds.load_lvis_format(str(path), str(tmp_path), check_images=False)
    return str(e.value).replace(str(path), "F")


def test_malformed_annotations_are_refused_naming_file_id_field_value(tmp_path):
    good = _good(tmp_path)

    def bad(i, key, value):
        data = copy.deepcopy(good)
        data["annotations"][i][key] = value
        return _refused(tmp_path, data)

    assert bad(0, "bbox", [1, 2, 3]) == \
        "Annotation id 1 in F: bbox [1, 2, 3] is not 4 finite numbers [x, y, width, height]"
    assert bad(0, "bbox", [1, float("nan"), 3, 4]) == \
        "Annotation id 1 in F: bbox [1, nan, 3, 4] is not 4 finite numbers [x, y, width, height]"
    assert bad(0, "segmentation", [[1, 2, None, 4, 5, 6]]) == \
        "Annotation id 1 in F: a polygon of its segmentation holds None, expected finite numbers"
    assert bad(0, "bbox", [10, 10, -5, 4]) == \
        "Annotation id 1 in F: bbox [10, 10, -5, 4] has a negative width or height"
    assert bad(0, "bbox", [200, 10, 5, 4]) == \
        "Annotation id 1 in F: bbox [200, 10, 5, 4] lies outside its image (image id 1000, " \
        "width 128, height 96)"
    runs = _uncompressed(np.ones((3000, 1000), dtype=np.uint8))["counts"]
    assert bad(RLE_UNCOMPRESSED, "segmentation", {"size": [H, W], "counts": runs}) == \
        "Annotation id 3 in F: segmentation.counts sum to 3000000, not to its image's " \
        "96 x 128 = 12288 pixels"
    assert bad(RLE_COMPRESSED, "segmentation", {"size": [H, W], "counts": "?"}) == \
        "Annotation id 2 in F: segmentation.counts '?' decodes to 15 pixels, not a " \
        "compressed RLE of its image's 96 x 128 = 12288 pixels"
    assert bad(RLE_COMPRESSED, "segmentation", {"size": [H, W], "counts": "0PT"}) == \
        "Annotation id 2 in F: segmentation.counts '0PT' does not decode, not a compressed " \
        "RLE of its image's 96 x 128 = 12288 pixels"  # its last run cut short
    assert bad(0, "category_id", "7") == \
        "Annotation id 1 in F: category_id '7' is a str, expected an integer"
    assert bad(0, "image_id", "1000") == \
        "Annotation id 1 in F: image_id '1000' is a str, expected an integer"
    data = copy.deepcopy(good)
    data["images"][0]["id"] = "1000"
    assert _refused(tmp_path, data) == \
        "Image '1000' in F: id '1000' is a str, expected an integer"
    data = copy.deepcopy(good)
    data["images"][0]["height"] = "96"
    assert _refused(tmp_path, data) == \
        "Image id 1000 in F: height '96' is not a positive integer"
    data = copy.deepcopy(good)
    data["images"][0]["neg_category_ids"] = [8]
    assert _refused(tmp_path, data) == \
        "Image id 1000 in F: neg_category_ids names 8, which is not among the categories " \
        "(ids 7..99, 5 of them)"


def test_kept_inputs_are_counted_in_one_warning(tmp_path, caplog):
    data = _good(tmp_path)
    data["annotations"][0]["bbox"] = [120, 90, 20, 20]  # past the image's corner
    data["annotations"][3]["bbox"] = [100, 50, 30, 0]
    data["annotations"][4]["bbox"] = [100, 50, 0, 4]
    path = tmp_path / "kept.json"
    path.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        dicts = ds.load_lvis_format(str(path), str(tmp_path), check_images=False)
    assert len(dicts) == 16
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: 1 boxes extend past their image (kept: detectron2 clips them to the image "
        "when it reads it), e.g. annotation id 1: bbox [120, 90, 20, 20] on image id 1000 "
        "(128x96); 2 boxes have zero width or height (kept as objects: training drops them as "
        "detectron2 drops empty boxes; in evaluation no detection matches them), e.g. "
        "annotation id 4: bbox [100, 50, 30, 0]"]


def test_a_file_without_annotations_is_a_test_set_with_a_warning(tmp_path, caplog):
    data = _good(tmp_path)
    data["annotations"] = []
    path = tmp_path / "test.json"
    path.write_text(json.dumps(data))
    name = _register(path)
    with caplog.at_level(logging.WARNING):
        _, res = _evaluate(name, crafted_detections(), tasks=("bbox",),
                           output_dir=str(tmp_path / "out"))
    assert res == {}
    written = tmp_path / "out" / "lvis_instances_results.json"
    assert f"{path} has no annotations: '{name}' is evaluated as a test set, which gives no " \
        f"metrics; its detections are written to {written}" in caplog.text
    assert written.exists()


# ----------------------------------------------------------------------- fuzz
def _fuzz_base():
    """A small valid COCO file: 3 images, categories 8, 3, 1 listed out of order (1 without
    objects), polygons, compressed and uncompressed RLE, a crowd region."""
    h, w = 24, 32
    unc, comp = _uncompressed, _compressed

    def rect(x, y, bw, bh):
        return _rect_mask(x, y, bw, bh, size=(h, w))

    anns = [
        (1, 1, 8, [2, 3, 10, 8], [[2, 3, 12, 3, 12, 11, 2, 11]], 0),
        (2, 1, 3, [14, 4, 12, 10], comp(rect(14, 4, 12, 10)), 0),
        (3, 2, 3, [0, 0, 8, 6], unc(rect(0, 0, 8, 6)), 0),
        (4, 2, 8, [10, 10, 20, 12], [[10, 10, 30, 10, 30, 22]], 0),
        (5, 3, 8, [4, 4, 16, 16], unc(rect(4, 4, 16, 16)), 1),
        (6, 3, 3, [20, 2, 6, 6], comp(rect(20, 2, 6, 6)), 0),
    ]
    annotations = [{"id": a, "image_id": i, "category_id": c, "bbox": b, "segmentation": s,
                    "iscrowd": z} for a, i, c, b, s, z in anns]
    annotations[0]["area"], annotations[1]["area"] = 80.0, 120  # the others have none
    return {
        "images": [{"id": i, "file_name": f"im{i}.jpg", "height": h, "width": w}
                   for i in (3, 1, 2)],
        "annotations": annotations,
        "categories": [{"id": 8, "name": "mug"}, {"id": 3, "name": "pan"},
                       {"id": 1, "name": "lid"}],
    }


_VALUES = [None, "7", "", 7.5, True, -1, 0, 2**40, float("nan"), float("inf"), [], {}, [1, 2],
           "x" * 3]
_FIELDS = {"images": ("id", "height", "width", "file_name"),
           "annotations": ("id", "image_id", "category_id", "bbox", "segmentation", "iscrowd",
                           "area"),
           "categories": ("id", "name")}


def _mutations(base, rng):
    """(description, mutated file) pairs: types and values of every field, missing and extra
    fields, box values and lengths, RLE sizes and counts, polygons, ids, LVIS's lists, order."""
    def pick(data, where):
        return data[where][int(rng.integers(len(data[where])))]

    for where, fields in _FIELDS.items():
        for key in fields:
            for value in _VALUES:
                data = copy.deepcopy(base)
                pick(data, where)[key] = value
                yield f"{where}.{key} = {value!r}", data
            data = copy.deepcopy(base)
            del next(e for e in data[where] if key in e)[key]
            yield f"{where} without {key}", data
        for extra, value in (("note", "x"), ("ignore", 1), ("ignore", 0), ("attributes", {})):
            data = copy.deepcopy(base)
            pick(data, where)[extra] = value
            yield f"{where}.{extra} = {value!r} added", data
    for k in range(4):
        for value in (None, "3", -4, 1e9, float("nan"), 0, 0.5, -100):
            data = copy.deepcopy(base)
            pick(data, "annotations")["bbox"][k] = value
            yield f"bbox[{k}] = {value!r}", data
    for n in (0, 3, 5):
        data = copy.deepcopy(base)
        pick(data, "annotations")["bbox"] = [1.0] * n
        yield f"bbox of {n} numbers", data
    rles = [a for a in base["annotations"] if isinstance(a["segmentation"], dict)]
    for k, ann in enumerate(rles):
        for size in ([24, 33], [32, 24], [24], "24x32", [24.0, 32.0], None):
            data = copy.deepcopy(base)
            next(a for a in data["annotations"] if a["id"] == ann["id"])["segmentation"]["size"] \
                = size
            yield f"RLE of annotation {ann['id']}: size {size!r}", data
        counts = ann["segmentation"]["counts"]
        if isinstance(counts, list):
            variants = [counts + [5], counts[:-1], [counts[0] + 1] + counts[1:],
                        [-1] + counts[1:], [float(c) for c in counts], counts[:-1] + [None], []]
        else:
            variants = [counts[:-1], counts + "1", counts[:-1] + "\x7f", "", counts[::-1],
                        counts.upper(), 12]
        for v in variants:
            data = copy.deepcopy(base)
            next(a for a in data["annotations"] if a["id"] == ann["id"])["segmentation"]["counts"] \
                = v
            yield f"RLE of annotation {ann['id']}: counts {str(v)[:20]!r}", data
    for poly in ([[1, 2, 3, 4]], [[1, 2, 3, 4, 5]], [[1, 2, 3, None, 5, 6]], [[]],
                 [1, 2, 3, 4, 5, 6], [[1, 2, 3, 4, 5, 6], [1, 2]], [["1", 2, 3, 4, 5, 6]],
                 [[1, 2, 3, 4, 5, 6]]):
        data = copy.deepcopy(base)
        data["annotations"][0]["segmentation"] = poly
        yield f"polygon {poly!r}", data
    for desc, change in (
            ("duplicate image id", lambda d: d["images"][1].update(id=d["images"][0]["id"])),
            ("duplicate annotation id", lambda d: d["annotations"][1].update(id=1)),
            ("duplicate category id", lambda d: d["categories"][1].update(id=8)),
            ("duplicate category name", lambda d: d["categories"][1].update(name="mug")),
            ("unknown image_id", lambda d: d["annotations"][2].update(image_id=99)),
            ("unknown category_id", lambda d: d["annotations"][2].update(category_id=2)),
            ("unused category renumbered", lambda d: d["categories"][2].update(id=50)),
            ("image renumbered", lambda d: [a.update(image_id=70) for a in d["annotations"]
                                            if a["image_id"] == 2] and
             d["images"][2].update(id=70)),
            ("empty LVIS lists", lambda d: [i.update(neg_category_ids=[],
                                                     not_exhaustive_category_ids=[])
                                            for i in d["images"]]),
            ("a negative of an unknown category", lambda d: d["images"][0].update(
                neg_category_ids=[4])),
            ("a negative named as a string", lambda d: d["images"][0].update(
                neg_category_ids=["1"])),
            ("not exhaustive not a list", lambda d: d["images"][0].update(
                not_exhaustive_category_ids=3)),
            ("no annotations", lambda d: d.update(annotations=[])),
            ("no categories", lambda d: d.update(categories=[])),
            ("images not a list", lambda d: d.update(images={})),
            ("an annotation that is a list", lambda d: d["annotations"].append([1, 2])),
            ("box past the image", lambda d: d["annotations"][0].update(bbox=[20, 18, 20, 10])),
            ("box outside the image", lambda d: d["annotations"][0].update(bbox=[40, 2, 5, 5])),
            ("empty box", lambda d: d["annotations"][3].update(bbox=[5, 5, 0, 3])),
            ("images shuffled", lambda d: d["images"].reverse()),
            ("annotations shuffled", lambda d: d["annotations"].reverse()),
            ("categories shuffled", lambda d: d["categories"].reverse()),
            ("no segmentation anywhere", lambda d: [a.pop("segmentation")
                                                    for a in d["annotations"]]),
    ):
        data = copy.deepcopy(base)
        change(data)
        yield desc, data


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _strip_lvis(records):
    return [{k: v for k, v in r.items()
             if k not in ("neg_category_ids", "not_exhaustive_category_ids")} for r in records]


def test_fuzzed_files_load_as_detectron2_or_are_refused(tmp_path):
    """Each mutation of a small valid file either loads to detectron2's load_coco_json records
    (and evaluates without an error) or is refused with an AnnotationFileError naming the file;
    never an error from inside pycocotools, hotcoco or torch."""
    from detectron2.data.datasets import load_coco_json

    from projects_lda.evaluation.analysis import evaluate_results
    from projects_lda.evaluation.ground_truth import load_ground_truth

    base = _fuzz_base()
    mutations = list(_mutations(base, np.random.default_rng(46)))
    assert len(mutations) >= 200
    handler = _Warnings()
    logging.getLogger("projects_lda.data").addHandler(handler)
    outcome = {"refused": 0, "equal": 0, "equal, with a warning": 0}
    try:
        for k, (desc, data) in enumerate(mutations):
            path = tmp_path / f"m{k}.json"
            path.write_text(json.dumps(data))
            handler.messages.clear()
            try:
                ours = ds.load_lvis_format(str(path), str(tmp_path), check_images=False)
            except AnnotationFileError as e:
                assert str(path) in str(e), (desc, str(e))
                outcome["refused"] += 1
                continue
            warned = bool(handler.messages)
            with contextlib.redirect_stdout(io.StringIO()):
                theirs = load_coco_json(str(path), str(tmp_path), f"fuzz_{k}")
            assert _strip_lvis(ours) == theirs, desc
            if data["annotations"]:  # hotcoco evaluates it: one detection per object
                rows = [{"image_id": a["image_id"], "category_id": a["category_id"],
                         "bbox": a["bbox"], "score": 0.5} for a in data["annotations"]]
                try:
                    gt, _ = load_ground_truth(str(path))
                    with contextlib.redirect_stdout(io.StringIO()):
                        evaluate_results(gt, rows, "bbox")
                except Exception as e:
                    raise AssertionError(f"{desc}: {e!r}") from e
            outcome["equal, with a warning" if warned else "equal"] += 1
    finally:
        logging.getLogger("projects_lda.data").removeHandler(handler)
    print(f"{len(mutations)} mutations: {outcome}")
    assert outcome == {"refused": REFUSED, "equal": EQUAL, "equal, with a warning": WARNED}


# ----------------------------------------------------------------------- results files
def test_results_files_are_checked_before_scoring(tmp_path):
    from projects_lda.evaluation.report import main as eval_report

    path = tmp_path / "val.json"
    crafted_file(path)
    rows = [r for r in _results_rows(crafted_detections())
            if r["category_id"] != 55 and r["image_id"] != 1000]
    order = sorted(c for c, _ in CATEGORIES)  # 7, 13, 42, 55, 99: the model's class k is the k-th

    def report(rows):
        results = tmp_path / "results.json"
        results.write_text(json.dumps(rows))
        with pytest.raises(ValueError) as e:
            eval_report(["--gt", str(path), "--results", str(results), "--out",
                         str(tmp_path / "r")])
        return str(e.value).replace(str(results), "R").replace(str(path), "F")

    contiguous = [dict(r, category_id=order.index(r["category_id"])) for r in rows]
    assert report(contiguous) == (
        "R: its category ids (0, 1, 2, 4) are contiguous (0..4 or 1..5) while those of F are "
        "sparse (7, 13, 42, 55, 99): write the file's own category ids (the model's class k is "
        "the k-th of them in id order, the dataset's thing_dataset_id_to_contiguous_id "
        "inverted)")
    assert report([dict(r, category_id=8) for r in rows[:3]]) == (
        "R: 1 category ids are not categories of F (first: 8; the file's: 7, 13, 42, 55, 99)")
    by_position = [dict(r, image_id=IMAGE_IDS.index(r["image_id"]) + 1) for r in rows]
    assert report(by_position) == (
        "R: 15 image ids are not images of F (first: 2, 3, 4, 5, 6 ...); image ids must be "
        "the annotation "
        "file's (tools/demo.py --annotations <file> takes them from it by file name)")
    assert report([dict(rows[0], score=float("nan"))]) == \
        "R: entry 0 has score nan, expected a finite number"


def test_demo_takes_image_ids_from_the_annotation_file(tmp_path):
    """Images named img_<id>.png, listed in another order: the results file's ids are the
    annotation file's, by file name; an image the file does not list is named."""
    import cv2
    from detectron2.structures import Boxes, Instances

    from projects_lda.data.class_names import ClassNames
    from projects_lda.deploy.demo import image_ids_from_annotations, run_on_images

    path = tmp_path / "val.json"
    crafted_file(path)
    folder = tmp_path / "images"
    folder.mkdir()
    files = []
    for iid in (1003, 1000, 1012):
        f = folder / f"img_{iid}.png"
        cv2.imwrite(str(f), np.zeros((H, W, 3), dtype=np.uint8))
        files.append(str(f))

    def predictor(image):
        inst = Instances(image.shape[:2])
        inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 11.0, 22.0]]))
        inst.scores = torch.tensor([0.9])
        inst.pred_classes = torch.tensor([1])
        return {"instances": inst}

    names = ClassNames([n for _, n in sorted(CATEGORIES)], sorted(c for c, _ in CATEGORIES))
    out = tmp_path / "results.json"
    run_on_images(predictor, files, class_names=names, metadata=None, json_file=str(out),
                  progress=False, annotations=str(path))
    rows = json.loads(out.read_text())
    assert [(r["image_id"], r["category_id"]) for r in rows] == \
        [(1003, 13), (1000, 13), (1012, 13)]
    stray = folder / "holiday.png"
    cv2.imwrite(str(stray), np.zeros((H, W, 3), dtype=np.uint8))
    with pytest.raises(ValueError) as e:
        image_ids_from_annotations(files + [str(stray)], str(path))
    assert str(e.value) == f"--annotations: {path} does not list the image {stray} (images " \
        "are matched by their file_name)"
