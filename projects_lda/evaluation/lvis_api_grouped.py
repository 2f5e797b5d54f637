"""
lvis-api's ``LVISEval`` run a group of categories at a time: the same numbers as one run over
all categories, in a fraction of its memory. It is the reference the hotcoco evaluator is checked
against at LVIS v1 val size (``tools/eval_benchmark.py --backends lvis-api-grouped``), where one
``LVISEval`` over 1,203 categories needs more memory than a 24 GB machine has: it keeps an IoU
entry for every (image, category) pair and a match record for every (category, area, image).

Why the groups give lvis-api's numbers exactly: ``LVISEval`` evaluates each category on its own.
``_prepare`` takes the ground truth and detections of ``params.cat_ids`` only, and a detection's
federated test reads its image's ``neg_category_ids`` and the categories annotated in the image,
which for a category of the group are among the group's annotations; the per-image cap is
applied once, by ``LVISResults``, before any group. Every summary is a mean over the entries of
the precision array ``[T, R, K, A]`` (recall ``[T, K, A]``) that are not -1, with the r / c / f
groups as index sets over K: joining the groups' arrays along K and summarising them with
lvis-api's own ``summarize`` gives the one-run values bit for bit (a test checks it).
"""
import numpy as np

__all__ = ["lvis_eval_by_category_group"]


def lvis_eval_by_category_group(lvis_gt, lvis_results, iou_type, *, group_size=100):
    """
    Args:
        lvis_gt (lvis.LVIS): the ground truth.
        lvis_results (lvis.LVISResults): the detections, already capped per image as wanted.
        iou_type (str): "bbox" or "segm".
        group_size (int): categories evaluated together; memory grows with it.

    Returns:
        lvis.LVISEval: summarised over all categories (``get_results()``, ``print_results()``);
        ``eval_imgs`` and ``ious`` hold the last group's only.
    """
    from lvis import LVISEval

    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    cat_ids = sorted(lvis_gt.get_cat_ids())
    precision, recall = [], []
    ev = None
    for start in range(0, len(cat_ids), group_size):
        ev = None  # free the previous group's per-image records before building the next
        ev = LVISEval(lvis_gt, lvis_results, iou_type)
        ev.params.cat_ids = cat_ids[start:start + group_size]
        ev.evaluate()
        ev.accumulate()
        precision.append(ev.eval["precision"])
        recall.append(ev.eval["recall"])
    if ev is None:
        raise ValueError("the ground truth has no categories")
    ev.params.cat_ids = cat_ids
    ev.eval["precision"] = np.concatenate(precision, axis=2)
    ev.eval["recall"] = np.concatenate(recall, axis=1)
    ev.eval["counts"][2] = len(cat_ids)
    ev.freq_groups = ev._prepare_freq_group()
    ev.summarize()
    return ev
