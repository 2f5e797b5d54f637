"""
Error analysis of LVIS detections with hotcoco, beyond the AP table: per-category AP, the TIDE
error breakdown, confusions between the classes of a group, and bootstrap confidence intervals
(over images) of the AP difference between two models.

All functions take an evaluation made by :func:`evaluate_results` from a results JSON in the LVIS
server's format (``TEST.LVIS_EVAL.WRITE_RESULTS_JSON``). Metrics are in percent, as in the
evaluator's results.
"""
import numpy as np

__all__ = ["evaluate_results", "per_class_ap", "tide_breakdown", "group_confusions",
           "bootstrap_difference", "TIDE_ERRORS"]

# TIDE error types (Bolya et al., ECCV 2020), in hotcoco's names
TIDE_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")


def evaluate_results(gt_json, results_json, iou_type="bbox", max_dets=300):
    """
    (gt, COCOeval): the LVIS evaluation of a results JSON (a path or a list of dicts), with
    lvis-api's rules and per-image cap (detections of area 0 left out), evaluated, accumulated
    and summarized. ``gt_json``: a
    hotcoco.COCO prepared by :func:`projects_lda.evaluation.ground_truth.load_ground_truth`, or
    a file path, prepared here (an exhaustive file counts detections of absent classes).
    """
    import hotcoco

    from .ground_truth import load_ground_truth

    gt = gt_json if isinstance(gt_json, hotcoco.COCO) else load_ground_truth(str(gt_json))[0]
    if isinstance(results_json, (list, tuple)):
        rows = list(results_json)
    else:
        import json

        with open(results_json) as f:
            rows = json.load(f)
    if iou_type == "segm":  # the mask area, not the box's, decides small / medium / large
        from pycocotools import mask as mask_util

        rows = [{k: v for k, v in r.items() if k != "bbox"} for r in rows]
        # one by one: pycocotools' area of a list counts it in a uint8
        areas = [mask_util.area(_rle(r["segmentation"])) for r in rows]
    else:
        rows = [{k: v for k, v in r.items() if k != "segmentation"} for r in rows]
        areas = [r["bbox"][2] * r["bbox"][3] for r in rows]
    # detections of area 0 are left out, as lvis-api's LVISEval reads them (and the evaluator)
    rows = [r for r, a in zip(rows, areas) if a > 0]
    dt = hotcoco.LVISResults(gt, rows, max_dets=max_dets)
    ev = hotcoco.COCOeval(gt, dt, iou_type, lvis_style=True)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return gt, ev


def _rle(segm):
    counts = segm["counts"]
    return {"size": segm["size"], "counts": counts.encode() if isinstance(counts, str) else counts}


def per_class_ap(gt, ev):
    """{category id: AP in percent} for the categories with ground truth in the evaluation."""
    res = ev.get_results(per_class=True)
    out = {}
    for cat in gt.load_cats(gt.get_cat_ids()):
        v = res.get(f"AP/{cat['name']}")
        if v is not None and v >= 0:
            out[cat["id"]] = 100.0 * float(v)
    return out


def tide_breakdown(ev, pos_thr=0.5, bg_thr=0.1):
    """TIDE: ``delta_ap`` (AP50 points gained if each error type were fixed) and ``counts``."""
    t = ev.tide_errors(pos_thr=pos_thr, bg_thr=bg_thr)
    return {"ap50": 100.0 * t["ap_base"],
            "delta_ap": {k: 100.0 * t["delta_ap"][k] for k in TIDE_ERRORS},
            "counts": {k: int(t["counts"][k]) for k in TIDE_ERRORS}}


def group_confusions(ev, group_of, iou_thr=0.5, min_score=0.3):
    """
    What the detections of score >= ``min_score`` make of each ground-truth object (IoU >=
    ``iou_thr``, every detection against every object regardless of category): the fraction
    found with its own class, with a class of its group (``group_of(category id)``), with a class
    of another group, or missed. In percent of the objects.
    """
    cm = ev.confusion_matrix(iou_thr=iou_thr, min_score=min_score)
    m = np.asarray(cm["matrix"], dtype=np.float64)
    k = cm["num_cats"]
    groups = np.array([group_of(c) for c in cm["cat_ids"]])
    objects = m[:k].sum()
    if objects == 0:
        return None
    own = np.trace(m[:k, :k])
    same = groups[:, None] == groups[None, :]
    sibling = m[:k, :k][same].sum() - own
    other = m[:k, :k][~same].sum()
    return {"own_class": 100 * own / objects, "group_sibling": 100 * sibling / objects,
            "other_group": 100 * other / objects, "missed": 100 * m[:k, k].sum() / objects}


def bootstrap_difference(ev_a, ev_b, metrics=("AP", "APr", "APc", "APf"), n_bootstrap=1000,
                         seed=0, confidence=0.95):
    """
    {metric: (b - a, lower, upper)} in percent points: the difference of model b from model a on
    the same images, with a bootstrap confidence interval over images (hotcoco.compare).
    """
    import hotcoco

    c = hotcoco.compare(ev_a, ev_b, n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
    return {m: (100.0 * c["deltas"][m], 100.0 * c["ci"][m]["lower"],
                100.0 * c["ci"][m]["upper"]) for m in metrics}
