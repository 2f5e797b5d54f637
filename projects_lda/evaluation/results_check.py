"""
Checks of a results file (detections in the COCO / LVIS results format) against the annotation
file it is scored on, before scoring: pycocotools and hotcoco score detections of an unknown
category as nothing (AP 0.0, silently) and those of an unknown image differently from each
other.
"""
import math

__all__ = ["check_results"]

_FIRST = 5  # ids named in an error


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _sorted(values):
    """Numbers in order, then anything else by its repr."""
    return sorted(values, key=lambda v: (0, v, "") if _is_number(v) else (1, 0, repr(v)))


def _ids(values):
    return ", ".join(repr(v) for v in values[:_FIRST]) + (" ..." if len(values) > _FIRST else "")


def check_results(rows, image_ids, category_ids, gt_json, results):
    """
    Raises ``ValueError`` naming ``results`` and ``gt_json`` when a row is not a detection
    (``image_id``, ``category_id``, a finite ``score``, a ``bbox`` of 4 finite numbers or a
    ``segmentation``), when image ids or category ids are not the annotation file's (the first
    few named), and says so when the category ids are contiguous (0..C-1 or 1..C) where the
    file's are not: results written with the model's class indices instead of the file's ids.
    """
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not {"image_id", "category_id", "score"} <= set(r):
            raise ValueError(f"{results}: entry {i} ({r!r:.80}) is not a detection with "
                             "'image_id', 'category_id', 'score' and 'bbox' or 'segmentation'")
        for key in ("image_id", "category_id"):
            if not isinstance(r[key], int) or isinstance(r[key], bool):
                raise ValueError(f"{results}: entry {i} has {key} {r[key]!r}, expected an "
                                 "integer")
        if not _is_number(r["score"]):
            raise ValueError(f"{results}: entry {i} has score {r['score']!r}, expected a finite "
                             "number")
        box = r.get("bbox")
        if box is None and "segmentation" not in r:
            raise ValueError(f"{results}: entry {i} has neither 'bbox' nor 'segmentation'")
        if box is not None and (not isinstance(box, list) or len(box) != 4
                                or not all(_is_number(v) for v in box)):
            raise ValueError(f"{results}: entry {i} has bbox {box!r}, expected 4 finite numbers "
                             "[x, y, width, height]")
    image_ids, category_ids = set(image_ids), set(category_ids)
    unknown = _sorted({r["image_id"] for r in rows} - image_ids)
    if unknown:
        raise ValueError(
            f"{results}: {len(unknown)} image ids are not images of {gt_json} (first: "
            f"{_ids(unknown)}); image ids must be the annotation file's (tools/demo.py "
            "--annotations <file> takes them from it by file name)")
    found = _sorted({r["category_id"] for r in rows})
    unknown = [c for c in found if c not in category_ids]
    if unknown:
        n = len(category_ids)
        sparse = category_ids != set(range(1, n + 1))
        contiguous = all(isinstance(c, int) for c in found) and (
            set(found) <= set(range(n)) or set(found) <= set(range(1, n + 1)))
        if sparse and contiguous:
            raise ValueError(
                f"{results}: its category ids ({_ids(found)}) are contiguous (0..{n - 1} or "
                f"1..{n}) while those of {gt_json} are sparse ({_ids(sorted(category_ids))}): "
                "write the file's own category ids (the model's class k is the k-th of them in "
                "id order, the dataset's thing_dataset_id_to_contiguous_id inverted)")
        raise ValueError(
            f"{results}: {len(unknown)} category ids are not categories of {gt_json} (first: "
            f"{_ids(unknown)}; the file's: {_ids(sorted(category_ids))})")
