"""
A DatasetMapper whose errors name the image that caused them, and which drops unusable
annotations in training instead of failing deep inside detectron2 or producing NaN losses.

What :class:`SafeDatasetMapper` does with bad data (training, ``is_train=True``):

* **Unreadable image** (missing, truncated, undecodable): raises :class:`ImageReadError` naming the
  file. In training, :class:`projects_lda.data.loader.ReproducibleTrainLoader` catches it, logs a
  warning and replaces the image by another one (counted in ``data/skipped_images``); in
  evaluation the error stops the run, since skipping an image would change the AP.
* **Degenerate box** (width or height <= 0, or a coordinate that is not finite): the annotation
  is dropped with a warning naming the image and the annotation id.
* **Empty or invalid polygon** (a polygon with fewer than 3 points, an odd number of coordinates
  or a non-finite coordinate) when masks are trained: the invalid polygons are removed; an
  annotation left with no polygon is dropped with a warning. (LVIS-format files registered with
  :mod:`projects_lda.data` are checked when they are loaded, and an empty polygon there is an
  error naming the file and the annotation id; this covers data from other loaders.)
* **Image left without annotations** (all of them dropped): trained as an image with no object,
  i.e. all its proposals are background. The LDA losses of such an image are finite (zero for
  the foreground terms, connected to the graph so distributed training still reduces every
  gradient). Images without annotations in the dataset itself are removed when the dataset is
  loaded, as detectron2 does with ``DATALOADER.FILTER_EMPTY_ANNOTATIONS`` (the default).

Dropped annotations are counted; :meth:`SafeDatasetMapper.pop_events` returns and resets the
counts (the training loader turns them into the ``data/dropped_annotations`` metric). Warnings
are logged for the first few occurrences of each kind per process, then summarised.
"""
import logging
import math
from collections import Counter

from detectron2.data import DatasetMapper
from detectron2.structures import BoxMode

__all__ = ["SafeDatasetMapper", "ImageReadError"]

logger = logging.getLogger(__name__)

_MAX_WARNINGS = 10  # per kind of problem and per process


class ImageReadError(RuntimeError):
    """An image of the dataset could not be read or decoded."""


def _finite(values):
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def _valid_polygon(poly):
    return len(poly) >= 6 and len(poly) % 2 == 0 and _finite(poly)


class SafeDatasetMapper(DatasetMapper):
    """
    :class:`DatasetMapper` that turns the deep traceback of an unreadable, truncated or missing
    image (PIL / OSError raised inside a data-loader worker) into an :class:`ImageReadError` that
    names the file, so a corrupt image in a 100k-image dataset is found at once; and that drops
    annotations with a degenerate box or no valid polygon in training (see the module docstring).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._events = Counter()
        self._warned = Counter()

    def pop_events(self) -> Counter:
        """Counts of what was dropped since the last call (e.g. ``dropped_annotations``)."""
        events, self._events = self._events, Counter()
        return events

    def __call__(self, dataset_dict):
        if self.is_train and dataset_dict.get("annotations"):
            dataset_dict = self._sanitize(dataset_dict)
        try:
            return super().__call__(dataset_dict)
        except (OSError, SyntaxError) as e:  # missing, truncated or undecodable image files
            name = dataset_dict.get("file_name", "<no file_name>")
            raise ImageReadError(f"cannot read image {name}: {type(e).__name__}: {e}") from e

    # ------------------------------------------------------------------------ annotations
    def _sanitize(self, dataset_dict):
        """Returns a shallow copy of ``dataset_dict`` without unusable annotations."""
        kept, changed = [], False
        for i, ann in enumerate(dataset_dict["annotations"]):
            if ann.get("iscrowd", 0):
                kept.append(ann)
                continue
            reason = self._box_problem(ann)
            if reason is None and self.use_instance_mask and "segmentation" in ann:
                segm = ann["segmentation"]
                if isinstance(segm, list):  # polygons (RLE dicts are left to detectron2)
                    polys = [p for p in segm if _valid_polygon(p)]
                    if not polys:
                        reason = ("polygon", "empty or invalid polygon")
                    elif len(polys) != len(segm):
                        ann = dict(ann, segmentation=polys)
                        changed = True
                        self._events["dropped_polygons"] += 1
            if reason is None:
                kept.append(ann)
                continue
            changed = True
            self._events["dropped_annotations"] += 1
            self._warn(reason, dataset_dict, ann, i)
        if not changed:
            return dataset_dict
        return dict(dataset_dict, annotations=kept)

    @staticmethod
    def _box_problem(ann):
        """None, or (kind, message) when the box cannot be used."""
        box = ann.get("bbox")
        if box is None:
            return None
        if len(box) != 4 or not _finite(box):
            return ("box", f"box {list(box)} is not 4 finite numbers")
        x0, y0, x1, y1 = BoxMode.convert(list(box), ann.get("bbox_mode", BoxMode.XYWH_ABS),
                                         BoxMode.XYXY_ABS)
        if not (x1 > x0 and y1 > y0):
            return ("box", f"degenerate box {list(box)} (zero width or height)")
        return None

    def _warn(self, reason, dataset_dict, ann, index):
        kind, reason = reason
        self._warned[kind] += 1
        n = self._warned[kind]
        if n <= _MAX_WARNINGS:
            which = f"id {ann['id']}" if "id" in ann else (
                f"#{index} (category_id {ann.get('category_id')})"
            )
            logger.warning(
                "Dropping annotation %s of image %s: %s%s",
                which,
                dataset_dict.get("file_name", dataset_dict.get("image_id", "?")),
                reason,
                " (further warnings of this kind are not logged; see the metric "
                "data/dropped_annotations)" if n == _MAX_WARNINGS else "",
            )
