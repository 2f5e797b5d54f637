"""
The ground truth of a COCO- or LVIS-format file as LVIS-mode evaluation needs it, shared by the
streamed evaluator (:mod:`projects_lda.evaluation.lvis_evaluation`) and the analysis of saved
results (:mod:`projects_lda.evaluation.analysis`).

* **Exhaustive or federated.** A federated file (LVIS: an image lists the categories verified
  absent in ``neg_category_ids``) is evaluated as lvis-api evaluates it: a detection of a
  category neither annotated nor negative in its image is ignored. An exhaustive file (COCO,
  or any file without LVIS's per-image lists) says every absent category is absent: each image
  is evaluated with every category it does not annotate as negative, so a detection of an absent
  class is a false positive, as pycocotools' COCOeval counts it (tested equal on AP, AP50, AP75
  at up to 100 detections per image, crowd regions included: a detection matched to a crowd
  region is ignored, not a false positive).
* **Frequency groups.** APr / APc / APf need each category's ``frequency``: taken from the file,
  else from the training set's counts (``frequency`` argument: file category id -> "r"/"c"/"f",
  LVIS's rule on training images), else, with a warning, from this file's own image counts.
* **Areas.** An annotation without ``area`` gets the area of its mask (its box without one),
  as COCO defines it; small / medium / large depend on it.
"""
import logging
from collections import defaultdict

from ..data.annotation_file import FEDERATED_KEYS
from ..data.frequency_groups import lvis_frequency

__all__ = ["is_federated", "categories_with_frequency", "evaluated_image", "with_area",
           "training_frequencies", "load_ground_truth"]

logger = logging.getLogger(__name__)


def is_federated(images, federated=None):
    """``federated`` when given (the dataset's metadata or a registration option), else whether
    any image carries LVIS's ``neg_category_ids`` / ``not_exhaustive_category_ids``."""
    if federated is not None:
        return bool(federated)
    return any(k in img for img in images for k in FEDERATED_KEYS)


def categories_with_frequency(categories, annotations, frequency=None, json_file="the file"):
    """
    The categories, each with a ``frequency`` (see the module docstring); ``annotations`` (the
    file's) are read only when some category has neither its own nor one in ``frequency``.
    """
    frequency = frequency or {}
    missing = [c for c in categories if "frequency" not in c and c["id"] not in frequency]
    own = {}
    if missing:
        logger.warning("%s: %d categories have no 'frequency' and no training counts were "
                       "given: APr/APc/APf group them by this file's own image counts",
                       json_file, len(missing))
        images = defaultdict(set)
        for a in annotations:
            if not a.get("iscrowd", 0):
                images[a["category_id"]].add(a["image_id"])
        own = {c["id"]: lvis_frequency(len(images[c["id"]])) for c in missing}
    return [c if "frequency" in c else dict(c, frequency=frequency.get(c["id"], own.get(c["id"])))
            for c in categories]


def evaluated_image(img, annotated_ids, all_ids, federated):
    """The image entry LVIS-mode evaluation reads: as it is in a federated file; in an exhaustive
    one with every category it does not annotate as negative and none not exhaustive."""
    if federated:
        if all(k in img for k in FEDERATED_KEYS):
            return img
        return dict({k: [] for k in FEDERATED_KEYS}, **img)
    annotated = set(annotated_ids)
    return dict(img, neg_category_ids=[c for c in all_ids if c not in annotated],
                not_exhaustive_category_ids=[])


def with_area(ann):
    """``ann`` with an ``area``: its own, else its mask's (polygons or RLE), else its box's."""
    if ann.get("area") is not None:
        return ann
    segm = ann.get("segmentation")
    if segm:
        from pycocotools import mask as mask_util

        if isinstance(segm, dict) and isinstance(segm.get("counts"), str):
            segm = dict(segm, counts=segm["counts"].encode())
        h, w = segm["size"] if isinstance(segm, dict) else (None, None)
        if isinstance(segm, list):  # polygons: any canvas that holds them
            h = int(max(max(p[1::2]) for p in segm)) + 2
            w = int(max(max(p[0::2]) for p in segm)) + 2
        rles = mask_util.frPyObjects(segm, h, w)
        area = float(mask_util.area(mask_util.merge(rles) if isinstance(rles, list) else rles))
    else:
        area = float(ann["bbox"][2] * ann["bbox"][3])
    return dict(ann, area=area)


def training_frequencies(dataset_name):
    """{file category id: "r"/"c"/"f"} of a registered training dataset (its metadata's
    ``class_frequency`` and ``thing_dataset_id_to_contiguous_id``), or None."""
    from detectron2.data import MetadataCatalog

    if not dataset_name:
        return None
    meta = MetadataCatalog.get(dataset_name)
    freq = meta.get("class_frequency", None)
    mapping = meta.get("thing_dataset_id_to_contiguous_id", None)
    if freq is None or mapping is None:
        return None
    return {int(cid): freq[i] for cid, i in mapping.items()}


def load_ground_truth(gt_json, *, federated=None, frequency=None):
    """
    ``(hotcoco.COCO, federated)``: the whole file prepared for LVIS-mode evaluation (every image
    as :func:`evaluated_image` makes it, every category with a frequency, every annotation with
    an area). ``gt_json``: a path or a hotcoco.COCO.
    """
    import hotcoco

    gt = gt_json if isinstance(gt_json, hotcoco.COCO) else hotcoco.COCO(str(gt_json))
    images = gt.load_imgs(gt.get_img_ids())
    anns = gt.load_anns(gt.get_ann_ids())
    cats = gt.load_cats(gt.get_cat_ids())
    federated = is_federated(images, federated)
    new_cats = categories_with_frequency(cats, anns, frequency, str(gt_json))
    needs_area = any(a.get("area") is None for a in anns)
    if federated and new_cats == cats and not needs_area and all(
            all(k in img for k in FEDERATED_KEYS) for img in images):
        return gt, federated
    annotated = defaultdict(set)
    for a in anns:
        annotated[a["image_id"]].add(a["category_id"])
    all_ids = [c["id"] for c in cats]
    images = [evaluated_image(img, annotated[img["id"]], all_ids, federated) for img in images]
    if needs_area:
        anns = [with_area(a) for a in anns]
    return hotcoco.COCO({"images": images, "annotations": anns, "categories": new_cats}), federated
