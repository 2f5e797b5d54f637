"""
COCO- and LVIS-format annotation files as users have them: validation, detectron2 records and
per-class metadata, all from one parse of the file (pure functions on the parsed dict; the
registration is in :mod:`projects_lda.data.datasets`).

Accepted (see docs/own_data.md):

* ``categories``: any distinct positive integer ids (COCO's 1..90 with gaps, LVIS's 1..C), mapped
  to contiguous ids in id order as detectron2's ``load_coco_json`` maps them; the map is the
  metadata's ``thing_dataset_id_to_contiguous_id``. Names must be distinct. ``image_count`` /
  ``instance_count`` / ``frequency`` are computed from the file (LVIS's rule) when absent.
* ``images``: ``id``, ``height``, ``width`` and ``file_name`` (relative to the image root, as
  COCO and detectron2 have it) or ``coco_url`` (LVIS: ``image_root/<split folder>/<file>``);
  ``file_name`` wins when both are given. LVIS's ``neg_category_ids`` /
  ``not_exhaustive_category_ids`` are optional: a file where an image lists a verified-negative
  category is *federated* (evaluated as LVIS is), any other file *exhaustive* (a detection of a
  class absent from an image is a false positive, as in COCO): the rule of
  :func:`projects_lda.data.validation.annotation_kind`.
* ``annotations``: ``id``, ``image_id``, ``category_id``, ``bbox`` (XYWH); ``segmentation`` as
  polygons, compressed RLE or uncompressed RLE (its ``size`` must be the image's ``[height,
  width]``), or absent on every annotation (a box-only file); ``iscrowd`` 0 or 1 (crowd regions
  are kept as detectron2 keeps them: not training targets, ignored regions in evaluation).

Refused with an error (:class:`AnnotationFileError`) naming the file, the id, the field and
the value: unknown keys are ignored, but missing required keys, duplicate image / annotation /
category ids, duplicate category names, non-positive category ids, annotations of an unlisted
category or image, files where some annotations have a segmentation and others not, and the
values :mod:`projects_lda.data.validation` checks (ids that are not integers, sizes that are not
positive integers, boxes that are not 4 finite numbers or lie outside their image, invalid
polygons, RLE of another size than its image or whose runs do not cover it, unknown categories
in LVIS's lists, an ``iscrowd`` other than 0/1).
"""
import os
from collections import defaultdict

import numpy as np

from detectron2.structures import BoxMode

from . import validation
from .frequency_groups import lvis_frequency
from .validation import FEDERATED_KEYS, AnnotationFileError

__all__ = ["validate", "records", "class_metadata", "FEDERATED_KEYS", "AnnotationFileError"]


def _require(entry, keys, what, json_file):
    missing = [k for k in keys if k not in entry]
    if missing:
        raise AnnotationFileError(f"{what} in {json_file} lacks the key(s) {missing}")


def _check_categories(data, json_file):
    cats = data["categories"]
    for cat in cats:
        _require(cat, ("id", "name"), f"Category {cat.get('id', cat)}", json_file)
        cid = cat["id"]
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 1:
            raise AnnotationFileError(f"Category {cat['name']!r} in {json_file} has id {cid!r}: "
                                      "category ids must be positive integers")
        if not isinstance(cat["name"], str) or not cat["name"]:
            raise AnnotationFileError(f"Category id {cid} in {json_file}: name {cat['name']!r} "
                                      "is not a non-empty string")
    cats = sorted(cats, key=lambda c: c["id"])
    seen_ids, seen_names = set(), {}
    for cat in cats:
        if cat["id"] in seen_ids:
            raise AnnotationFileError(f"Category id {cat['id']} appears twice in {json_file}")
        seen_ids.add(cat["id"])
        if cat["name"] in seen_names:
            raise AnnotationFileError(
                f"Categories {seen_names[cat['name']]} and {cat['id']} in {json_file} have the "
                f"same name {cat['name']!r}: names must be distinct")
        seen_names[cat["name"]] = cat["id"]
    if not cats:
        raise AnnotationFileError(f"{json_file} lists no categories")
    return cats


def validate(data, json_file, annotations=None):
    """
    Check a parsed COCO- or LVIS-format file (see the module docstring and
    :mod:`projects_lda.data.validation`). Returns ``(categories sorted by id, info)`` with
    ``info``: ``federated`` (:func:`~projects_lda.data.validation.annotation_kind`, with
    ``annotations`` the registration's forced kind), ``has_masks`` (True, False for a box-only
    file, None without annotations), ``has_rle_masks`` and ``warnings`` (what the loader logs:
    the inputs kept with a defined behaviour, counted, and the exhaustive / federated warning).
    """
    if not isinstance(data, dict):
        raise AnnotationFileError(f"{json_file} does not hold a JSON object (got "
                                  f"{type(data).__name__})")
    _require(data, ("images", "annotations", "categories"), "The top-level object", json_file)
    validation.check_top_level(data, json_file)
    cats = _check_categories(data, json_file)
    cat_ids = {c["id"] for c in cats}
    sizes = {}
    for img in data["images"]:
        what = f"Image {img.get('id')!r}"
        _require(img, ("id", "height", "width"), what, json_file)
        if "file_name" not in img and "coco_url" not in img:
            raise AnnotationFileError(f"{what} in {json_file} has neither 'file_name' (relative "
                                      "to the image root) nor 'coco_url' (LVIS)")
        validation.check_image(img, json_file, cat_ids)
        if img["id"] in sizes:
            raise AnnotationFileError(f"Image id {img['id']} appears twice in {json_file}")
        sizes[img["id"]] = (img["height"], img["width"])
    kind = validation.annotation_kind(data["images"], json_file, annotations)
    ann_ids = set()
    with_mask = without_mask = rle = 0
    first_without = first_with = None
    tally = validation.Tally()
    for ann in data["annotations"]:
        _require(ann, ("id", "image_id", "category_id", "bbox"),
                 f"Annotation {ann.get('id')!r}", json_file)
        validation.check_annotation_ids(ann, json_file)
        if ann["id"] in ann_ids:
            raise AnnotationFileError(f"Annotation id {ann['id']} appears twice in {json_file}")
        ann_ids.add(ann["id"])
        if ann["category_id"] not in cat_ids:
            raise AnnotationFileError(
                f"Annotation id {ann['id']} in {json_file} has category_id "
                f"{ann['category_id']!r}, which is not among the categories (ids "
                f"{min(cat_ids)}..{max(cat_ids)}, {len(cat_ids)} of them)")
        size = sizes.get(ann["image_id"])
        if size is None:
            raise AnnotationFileError(
                f"Annotation id {ann['id']} in {json_file} has image_id {ann['image_id']!r}, "
                f"which is not among the images")
        validation.check_annotation(ann, size, json_file, tally)
        if ann.get("segmentation"):
            rle += validation.check_segmentation(ann, size, json_file)
            with_mask += 1
            first_with = ann["id"] if first_with is None else first_with
        else:
            without_mask += 1
            first_without = ann["id"] if first_without is None else first_without
    if with_mask and without_mask:
        raise AnnotationFileError(
            f"{json_file}: {without_mask} annotations have no segmentation (e.g. annotation id "
            f"{first_without}) and {with_mask} have one (e.g. id {first_with}): give every "
            "annotation a mask, or drop 'segmentation' from all of them to train boxes only "
            "(MODEL.MASK_ON False)")
    info = {"federated": kind.federated, "has_masks": bool(with_mask) if ann_ids else None,
            "has_rle_masks": rle > 0,
            "warnings": [w for w in (tally.warning(json_file), kind.warning) if w]}
    return cats, info


def _image_path(img, image_root):
    if "file_name" in img:  # COCO / detectron2: relative to the image root
        return os.path.join(image_root, img["file_name"])
    # LVIS: the split folder and the file from coco_url, as detectron2's load_lvis_json
    split_folder, file_name = img["coco_url"].split("/")[-2:]
    return os.path.join(image_root + split_folder, file_name)


def records(data, image_root, id_map, federated, path_from=None):
    """
    detectron2 dataset dicts of a validated file, as detectron2's ``load_coco_json`` (or, for
    an LVIS file, ``load_lvis_json``) makes them, from the dict already parsed: records sorted by
    image id, annotations in file order, ``category_id`` contiguous (``id_map``), ``iscrowd``
    kept when the file has it, uncompressed RLE turned into compressed RLE, no ``segmentation``
    key on a box-only file; a federated file's records carry its ``neg_category_ids`` and
    ``not_exhaustive_category_ids`` (file ids, as ``load_lvis_json``). ``image_root`` ends with
    a separator; ``path_from="coco_url"`` takes the path from ``coco_url`` even when
    ``file_name`` is present (detectron2's own LVIS splits). The records share the boxes and
    polygons of ``data``.
    """
    anns_of = defaultdict(list)
    for ann in data["annotations"]:
        anns_of[ann["image_id"]].append(ann)
    out = []
    for img in sorted(data["images"], key=lambda i: i["id"]):
        src = {"coco_url": img["coco_url"]} if path_from == "coco_url" else img
        record = {
            "file_name": _image_path(src, image_root),
            "height": img["height"],
            "width": img["width"],
        }
        if federated:
            record["not_exhaustive_category_ids"] = img.get("not_exhaustive_category_ids", [])
            record["neg_category_ids"] = img.get("neg_category_ids", [])
        record["image_id"] = img["id"]
        record["annotations"] = [_annotation(ann, id_map) for ann in anns_of.pop(img["id"], ())]
        out.append(record)
    return out


def _annotation(ann, id_map):
    obj = {"bbox": ann["bbox"], "bbox_mode": BoxMode.XYWH_ABS,
           "category_id": id_map[ann["category_id"]]}
    if "iscrowd" in ann:
        obj["iscrowd"] = ann["iscrowd"]
    segm = ann.get("segmentation")
    if segm:
        if isinstance(segm, dict) and isinstance(segm["counts"], list):
            from pycocotools import mask as mask_util  # uncompressed RLE, as load_coco_json

            segm = mask_util.frPyObjects(segm, *segm["size"])
        obj["segmentation"] = segm
    return obj


def class_lists(dicts):
    """(contiguous category ids int32, annotations per record int64, crowd flags bool) of the
    records, record after record: what the class statistics need, O(instances)."""
    counts = np.fromiter((len(d["annotations"]) for d in dicts), np.int64, len(dicts))
    total = int(counts.sum())
    cats = np.fromiter((a["category_id"] for d in dicts for a in d["annotations"]), np.int32,
                       total)
    crowd = np.fromiter((a.get("iscrowd", 0) for d in dicts for a in d["annotations"]), bool,
                        total)
    return cats, counts, crowd


def class_metadata(data, json_file, info=None, annotations=None):
    """
    Per-class metadata of a parsed file (validated here, with ``annotations`` the forced kind,
    unless ``info``, :func:`validate`'s, is given): ``thing_classes``,
    ``thing_dataset_id_to_contiguous_id``, ``class_image_count`` (detectron2's format
    ``[{"id", "image_count"}]``), ``class_instance_count``, ``class_frequency``, and the file's
    ``federated`` / ``has_masks`` / ``has_rle_masks`` / ``warnings``. Counts the categories lack
    are computed from the file's non-crowd annotations.
    """
    cats, file_info = validate(data, json_file, annotations) if info is None else info
    images, instances = defaultdict(set), defaultdict(int)
    if any("image_count" not in c or "instance_count" not in c for c in cats):
        for ann in data["annotations"]:
            if not ann.get("iscrowd", 0):
                images[ann["category_id"]].add(ann["image_id"])
                instances[ann["category_id"]] += 1
    image_count = [c.get("image_count", len(images[c["id"]])) for c in cats]
    return {
        "thing_classes": [c["name"] for c in cats],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
        "class_image_count": [
            {"id": c["id"], "image_count": n} for c, n in zip(cats, image_count)
        ],
        "class_instance_count": [c.get("instance_count", instances[c["id"]]) for c in cats],
        "class_frequency": [
            c.get("frequency", lvis_frequency(n)) for c, n in zip(cats, image_count)
        ],
        **file_info,
    }
