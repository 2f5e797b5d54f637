"""
The value checks of a COCO- or LVIS-format file that pycocotools, hotcoco and torch would
otherwise meet only after training (as a crash naming no file, or as a silently lower AP), and
the one rule deciding whether a file is evaluated as exhaustive or federated.

:func:`check_image` and :func:`check_annotation` raise :class:`AnnotationFileError` naming the
file, the image or annotation id, the field and the value's ``repr``; what has a defined
behaviour is counted in a :class:`Tally` and reported in one warning per file
(:meth:`Tally.warning`). :func:`annotation_kind` is the exhaustive / federated rule the loader,
the evaluator, the evaluation report and the evaluation of results files all call.
"""
import math
from collections import namedtuple

__all__ = ["AnnotationFileError", "AnnotationKind", "Tally", "annotation_kind", "check_image",
           "check_annotation", "check_top_level", "rle_counts_from_string", "FEDERATED_KEYS"]

# image fields of LVIS's federated annotation
FEDERATED_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


class AnnotationFileError(ValueError):
    """A COCO- or LVIS-format file holds a value that cannot be loaded or evaluated."""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _type_name(v):
    return type(v).__name__


def check_top_level(data, json_file):
    """``images``, ``annotations`` and ``categories`` are lists of JSON objects."""
    for key in ("images", "annotations", "categories"):
        entries = data[key]
        if not isinstance(entries, list):
            raise AnnotationFileError(f"{json_file}: '{key}' is a {_type_name(entries)}, "
                                      "expected a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise AnnotationFileError(f"{json_file}: {key}[{i}] is {entry!r}, expected an "
                                          "object")


class Tally:
    """Inputs with a defined behaviour met while checking one file: counted, with the first
    example of each, for one warning."""

    # kind -> what is done with it
    KINDS = {
        "box_past_image": "boxes extend past their image (kept: detectron2 clips them to the "
                          "image when it reads it)",
        "empty_box": "boxes have zero width or height (kept as objects: training drops them "
                     "as detectron2 drops empty boxes; in evaluation no detection matches them)",
    }

    def __init__(self):
        self.counts = {}
        self.examples = {}

    def add(self, kind, example):
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.examples.setdefault(kind, example)

    def warning(self, json_file):
        """The one warning of the file, or None when nothing was counted."""
        if not self.counts:
            return None
        parts = [f"{n} {self.KINDS[k]}, e.g. {self.examples[k]}" for k, n in self.counts.items()]
        return f"{json_file}: " + "; ".join(parts)


def _check_own_id(entry, value, json_file):
    """An image's or annotation's ``id``: an integer >= 0 (hotcoco reads ids as unsigned)."""
    if not _is_int(value):
        raise AnnotationFileError(f"{entry} {value!r} in {json_file}: id {value!r} is a "
                                  f"{_type_name(value)}, expected an integer")
    if value < 0:
        raise AnnotationFileError(f"{entry} {value} in {json_file}: id {value} is negative, "
                                  "expected an integer >= 0")
    return value


def check_image(img, json_file, cat_ids):
    """Types and values of an image entry whose required keys are present."""
    iid = _check_own_id("Image", img["id"], json_file)
    for key in ("height", "width"):
        v = img[key]
        if not _is_int(v) or v < 1:
            raise AnnotationFileError(f"Image id {iid} in {json_file}: {key} {v!r} is not a "
                                      "positive integer")
    for key in ("file_name", "coco_url"):
        if key in img and not isinstance(img[key], str):
            raise AnnotationFileError(f"Image id {iid} in {json_file}: {key} {img[key]!r} is "
                                      "not a string")
    for key in FEDERATED_KEYS:
        if key not in img:
            continue
        ids = img[key]
        if not isinstance(ids, list):
            raise AnnotationFileError(f"Image id {iid} in {json_file}: {key} {ids!r} is not a "
                                      "list of category ids")
        unknown = [c for c in ids if not _is_int(c) or c not in cat_ids]
        if unknown:
            raise AnnotationFileError(
                f"Image id {iid} in {json_file}: {key} names {unknown[0]!r}, which is not among "
                f"the categories (ids {min(cat_ids)}..{max(cat_ids)}, {len(cat_ids)} of them)")


def check_annotation(ann, size, json_file, tally):
    """
    Types and values of an annotation whose required keys are present and whose ``image_id``
    and ``category_id`` are integers (:func:`check_annotation_ids`); ``size`` is its image's
    ``(height, width)``. The segmentation is checked by :func:`check_segmentation`.
    """
    aid = ann["id"]
    where = f"Annotation id {aid} in {json_file}"
    box = ann["bbox"]
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        raise AnnotationFileError(f"{where}: bbox {box!r} is not 4 finite numbers [x, y, width, "
                                  "height]")
    x, y, w, h = box
    if w < 0 or h < 0:
        raise AnnotationFileError(f"{where}: bbox {box!r} has a negative width or height")
    height, width = size
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        if w > 0 and h > 0 or not (0 <= x <= width and 0 <= y <= height):
            raise AnnotationFileError(
                f"{where}: bbox {box!r} lies outside its image (image id {ann['image_id']}, "
                f"width {width}, height {height})")
    if w == 0 or h == 0:
        tally.add("empty_box", f"annotation id {aid}: bbox {box!r}")
    elif x < 0 or y < 0 or x + w > width or y + h > height:
        tally.add("box_past_image", f"annotation id {aid}: bbox {box!r} on image id "
                                    f"{ann['image_id']} ({width}x{height})")
    if "area" in ann and ann["area"] is not None and (
            not _is_number(ann["area"]) or ann["area"] < 0):
        raise AnnotationFileError(f"{where}: area {ann['area']!r} is not a finite number >= 0")
    if ann.get("ignore", 0) not in (0, None):
        raise AnnotationFileError(f"{where}: ignore {ann['ignore']!r} is not supported (nor by "
                                  "detectron2's load_coco_json): mark regions to ignore with "
                                  "iscrowd 1")
    if "iscrowd" in ann and (not _is_int(ann["iscrowd"]) or ann["iscrowd"] not in (0, 1)):
        raise AnnotationFileError(f"{where} has iscrowd {ann['iscrowd']!r}: expected 0 or 1")


def check_annotation_ids(ann, json_file):
    """``id``, ``image_id`` and ``category_id`` of an annotation are integers."""
    aid = _check_own_id("Annotation", ann["id"], json_file)
    for key in ("image_id", "category_id"):
        v = ann[key]
        if not _is_int(v):
            raise AnnotationFileError(f"Annotation id {aid} in {json_file}: {key} {v!r} is a "
                                      f"{_type_name(v)}, expected an integer")


def rle_counts_from_string(s):
    """
    The run lengths of a compressed RLE string (pycocotools' ``rleFrString``, in Python), or
    None when the string is not one (a character outside its alphabet, a run cut short, a
    negative run).
    """
    counts, p, n = [], 0, len(s)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                return None
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            return None
        counts.append(x)
    return counts


def check_segmentation(ann, size, json_file):
    """
    True when ``ann`` (with a non-empty ``segmentation``) has an RLE mask; raises on a malformed
    polygon or RLE: polygons of fewer than 3 points or of other than finite numbers, an RLE of
    another size than its image (``size``, ``(height, width)``), run lengths that are not
    non-negative integers summing to height x width, compressed counts that do not decode.
    """
    aid = ann["id"]
    where = f"Annotation id {aid} in {json_file}"
    segm = ann["segmentation"]
    if isinstance(segm, dict):
        if "size" not in segm or "counts" not in segm:
            raise AnnotationFileError(f"{where}: its RLE segmentation lacks 'size' or 'counts'")
        if not isinstance(segm["size"], list) or list(segm["size"]) != list(size) or not all(
                _is_int(v) for v in segm["size"]):
            raise AnnotationFileError(
                f"{where}: segmentation.size {segm['size']!r} is not its image's [height, "
                f"width] {list(size)} (image id {ann['image_id']})")
        counts = segm["counts"]
        pixels = size[0] * size[1]
        if isinstance(counts, str):
            runs = rle_counts_from_string(counts)
            if runs is None or sum(runs) != pixels:
                got = "does not decode" if runs is None else f"decodes to {sum(runs)} pixels"
                raise AnnotationFileError(
                    f"{where}: segmentation.counts {_short(counts)} {got}, not a compressed RLE "
                    f"of its image's {size[0]} x {size[1]} = {pixels} pixels")
        elif isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts):
                bad = next(c for c in counts if not (_is_int(c) and c >= 0))
                raise AnnotationFileError(f"{where}: segmentation.counts holds {bad!r}: run "
                                          "lengths are non-negative integers")
            if sum(counts) != pixels:
                raise AnnotationFileError(
                    f"{where}: segmentation.counts sum to {sum(counts)}, not to its image's "
                    f"{size[0]} x {size[1]} = {pixels} pixels")
        else:
            raise AnnotationFileError(f"{where}: segmentation.counts {_short(counts)} is neither "
                                      "a string (compressed RLE) nor a list (uncompressed RLE)")
        return True
    if not isinstance(segm, list) or any(
            not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in segm):
        raise AnnotationFileError(
            f"Annotation id {aid} in {json_file} has an invalid segmentation: expected "
            "a non-empty list of polygons [x1, y1, x2, y2, ...] with at least 3 points, or an "
            "RLE {'size': [h, w], 'counts': ...}")
    for poly in segm:
        bad = next((v for v in poly if not _is_number(v)), poly)
        if bad is not poly:
            raise AnnotationFileError(f"{where}: a polygon of its segmentation holds {bad!r}, "
                                      "expected finite numbers")
    return False


def _short(v, limit=40):
    r = repr(v)
    return r if len(r) <= limit else r[:limit - 3] + "..."


AnnotationKind = namedtuple("AnnotationKind", ["federated", "reason", "warning"])
AnnotationKind.__doc__ = """How a file is evaluated: ``federated`` (bool), ``reason`` (the
rule's words for the log) and ``warning`` (None, or what the user must hear)."""


def annotation_kind(images, json_file, forced=None):
    """
    Exhaustive or federated, the one rule (docs/own_data.md):

    * ``forced`` ("federated" / "exhaustive", or a bool: the dataset's registration) wins;
    * else the file is *federated* when at least one image lists a verified-negative category
      (a non-empty ``neg_category_ids``): LVIS's rules then hold, and a detection of a class
      neither annotated nor negative in its image is ignored;
    * else it is *exhaustive*: every class not annotated in an image is absent from it, and a
      detection of it is a false positive (COCO). A file whose images carry LVIS's lists but
      not one negative is exhaustive too, with a warning: read by LVIS's rules it would ignore
      every detection of an absent class.

    ``images``: the file's image entries (as parsed, or as hotcoco returns them: it drops
    empty lists, which the rule does not read).
    """
    if forced is not None:
        federated = forced == "federated" if isinstance(forced, str) else bool(forced)
        kind = "federated" if federated else "exhaustive"
        return AnnotationKind(federated, f"registered as {kind}", None)
    with_lists = with_negatives = 0
    for img in images:
        if any(k in img for k in FEDERATED_KEYS):
            with_lists += 1
        if img.get("neg_category_ids"):
            with_negatives += 1
    if with_negatives:
        return AnnotationKind(True, f"{with_negatives} of its {len(images)} images list "
                                    "verified-negative categories (neg_category_ids)", None)
    if with_lists:
        warning = (
            f"{json_file}: {with_lists} of its {len(images)} images carry LVIS's "
            "neg_category_ids / not_exhaustive_category_ids, but no image lists a single "
            "verified-negative category; by LVIS's rules every detection of a class absent "
            "from an image would be ignored. It is evaluated as exhaustive (a detection of a "
            "class not annotated in an image is a false positive, as in COCOeval); register "
            "it with ':federated' (annotations='federated') to evaluate it by LVIS's rules")
        return AnnotationKind(False, "no image lists a verified-negative category", warning)
    return AnnotationKind(False, "no image carries LVIS's neg_category_ids", None)
