"""
The ground truth of a COCO- or LVIS-format file as LVIS-mode evaluation needs it, shared by the
streamed evaluator (:mod:`projects_lda.evaluation.lvis_evaluation`) and the analysis of saved
results (:mod:`projects_lda.evaluation.analysis`).

* **Exhaustive or federated**, by :func:`projects_lda.data.validation.annotation_kind`, the
  loader's rule (:func:`evaluation_kind` logs it with its reason). A federated file (LVIS: an
  image lists categories verified absent in ``neg_category_ids``) is evaluated as lvis-api
  evaluates it: a detection of a category neither annotated nor negative in its image is
  ignored. An exhaustive file (COCO, or any file where no image lists a verified-negative
  category) says every absent category is absent: each image
  is evaluated with every category it does not annotate as negative, so a detection of an absent
  class is a false positive, as pycocotools' COCOeval counts it (tested equal on AP, AP50, AP75
  at up to 100 detections per image, crowd regions included: a detection matched to a crowd
  region is ignored, not a false positive).
* **Frequency groups.** APr / APc / APf need each category's ``frequency``: taken from the file,
  else from the training set's counts (``frequency`` argument: file category id -> "r"/"c"/"f",
  LVIS's rule on training images), else, with a warning, from this file's own image counts.
* **Areas.** An annotation without ``area`` gets the area of its mask (its box without one),
  computed as pycocotools computes the area of a mask (``mask.area`` of its RLE, polygons
  rasterised on the image's canvas); small / medium / large depend on it.
"""
import json
import logging
import os
from collections import defaultdict

from ..data.frequency_groups import lvis_frequency
from ..data.validation import FEDERATED_KEYS, annotation_kind

__all__ = ["evaluation_kind", "categories_with_frequency", "evaluated_image", "with_area",
           "training_frequencies", "load_ground_truth"]

logger = logging.getLogger(__name__)


def evaluation_kind(images, json_file, forced=None):
    """
    The file's :func:`~projects_lda.data.validation.annotation_kind` (``forced``: the
    registration's kind, "federated" / "exhaustive" / a bool, or None), logged with its reason,
    and its warning when it has one.
    """
    kind = annotation_kind(images, json_file, forced)
    if kind.reason.startswith("no image carries") and os.path.isfile(json_file):
        # hotcoco drops empty lists, which the warning is about: the file's own entries
        with open(json_file) as f:
            kind = annotation_kind(json.load(f)["images"], json_file)
    logger.info("%s is evaluated as %s: %s", json_file,
                "federated (LVIS's rules)" if kind.federated else "exhaustive", kind.reason)
    if kind.warning:
        logger.warning(kind.warning)
    return kind


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


def with_area(ann, size=None):
    """
    ``ann`` with an ``area``: its own, else its mask's (polygons, compressed or uncompressed
    RLE), else its box's. ``size``: the image's (height, width), the canvas polygons are
    rasterised on, as pycocotools' ``annToRLE``; without it, a canvas that holds them.
    """
    if ann.get("area") is not None:
        return ann
    segm = ann.get("segmentation")
    if segm:
        from pycocotools import mask as mask_util

        if isinstance(segm, dict):
            h, w = segm["size"]
            if isinstance(segm["counts"], list):  # uncompressed
                rle = mask_util.frPyObjects(segm, h, w)
            else:
                counts = segm["counts"]
                rle = {"size": [h, w],
                       "counts": counts.encode() if isinstance(counts, str) else counts}
        else:
            if size is not None:
                h, w = size
            else:
                h = int(max(max(p[1::2]) for p in segm)) + 2
                w = int(max(max(p[0::2]) for p in segm)) + 2
            rle = mask_util.merge(mask_util.frPyObjects(segm, h, w))
        area = float(mask_util.area(rle))
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
    an area). ``gt_json``: a path or a hotcoco.COCO. ``federated``: the registration's kind
    (:func:`evaluation_kind`'s ``forced``), None to decide from the file.
    """
    import hotcoco

    gt = gt_json if isinstance(gt_json, hotcoco.COCO) else hotcoco.COCO(str(gt_json))
    images = gt.load_imgs(gt.get_img_ids())
    anns = gt.load_anns(gt.get_ann_ids())
    cats = gt.load_cats(gt.get_cat_ids())
    federated = evaluation_kind(images, str(gt_json), federated).federated
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
        size = {img["id"]: (img["height"], img["width"]) for img in images}
        anns = [with_area(a, size.get(a["image_id"])) for a in anns]
    return hotcoco.COCO({"images": images, "annotations": anns, "categories": new_cats}), federated
