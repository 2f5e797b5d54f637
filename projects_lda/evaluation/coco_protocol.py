"""
COCO's protocol on an exhaustive file: pycocotools' COCOeval itself, on the ground truth and the
detections the evaluator or a results file has, so that the numbers are COCOeval's by
construction (``TEST.LVIS_EVAL.PROTOCOL coco``, ``tools/eval_report.py --protocol coco``).

What differs from the LVIS protocol (the default, :mod:`.lvis_evaluation`) on the same file:

* COCOeval keeps the 100 highest-scoring detections per image *and category*; LVIS keeps the
  300 highest per image over all categories;
* a detection of zero area (an empty box or mask) is a false positive in COCOeval; lvis-api
  (and the LVIS protocol) leaves it out;
* the metrics are COCO's six (AP, AP50, AP75, APs, APm, APl, on COCO's area ranges); COCO has no
  frequency groups, so no APr / APc / APf.

A federated file cannot be evaluated so: COCOeval counts a detection of any class not annotated
in an image as a false positive, which a federated file does not say (:func:`check_exhaustive`).
"""
import contextlib
import copy
import io
import math

__all__ = ["PROTOCOLS", "COCO_METRICS", "coco_metrics", "coco_ground_truth", "check_exhaustive",
           "check_protocol", "protocol_line"]

PROTOCOLS = ("lvis", "coco")
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def protocol_line(protocol):
    """The words printed beside a table of ``protocol``'s numbers."""
    if protocol == "coco":
        return ("COCO protocol (pycocotools' COCOeval: 100 detections per image and category, "
                "empty detections count as false positives)")
    return ("LVIS protocol (300 detections per image over all categories, empty detections "
            "left out, as lvis-api)")


def check_protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: choose one of {PROTOCOLS} "
                         "(TEST.LVIS_EVAL.PROTOCOL, tools/eval_report.py --protocol)")


def check_exhaustive(protocol, federated, what):
    """Raises when COCO's protocol is asked for on a federated file (``what`` names it)."""
    check_protocol(protocol)
    if protocol == "coco" and federated:
        raise ValueError(
            f"{what} is federated (LVIS's neg_category_ids): COCO's protocol would count every "
            "detection of a class not annotated in an image as a false positive, which a "
            "federated file does not say; evaluate it with the LVIS protocol "
            "(TEST.LVIS_EVAL.PROTOCOL lvis), or register it as exhaustive if it is")


def coco_metrics(dataset, rows, task):
    """
    ``({metric: percent}, COCOeval)``: pycocotools' COCOeval of the results ``rows`` (dicts of
    a results file, file category ids, any number per image) on ``dataset`` (a COCO-format dict
    whose annotations all have an ``area``: :func:`ground_truth.with_area`) for ``task`` ("bbox"
    or "segm"). A metric COCOeval leaves undefined (-1: no object in that area range) is NaN,
    as in detectron2's COCOEvaluator.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # a segm row's box would give its area to COCOeval (detectron2's COCOEvaluator drops it too)
    drop = "bbox" if task == "segm" else "segmentation"
    rows = [{k: v for k, v in r.items() if k != drop} for r in rows]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        if rows:
            dt = gt.loadRes(copy.deepcopy(rows))
        else:  # loadRes reads its first row
            dt = COCO()
            dt.dataset = {"images": list(dataset["images"]),
                          "categories": list(dataset["categories"]), "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, task)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {m: float(v * 100) if v >= 0 else math.nan
            for m, v in zip(COCO_METRICS, ev.stats[:6])}, ev


def coco_ground_truth(json_file):
    """
    The file as COCOeval reads it: parsed and validated (the loader's checks,
    :mod:`projects_lda.data.validation`), every annotation with an ``area`` (its own, else as
    pycocotools computes a mask's: :func:`ground_truth.with_area`) and an ``iscrowd`` (0 when
    absent, as detectron2's loader reads it).
    """
    import json

    from ..data.annotation_file import validate
    from .ground_truth import with_area

    with open(json_file) as f:
        data = json.load(f)
    validate(data, json_file)
    size = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    data["annotations"] = [dict(with_area(a, size[a["image_id"]]), iscrowd=a.get("iscrowd", 0))
                           for a in data["annotations"]]
    return data
