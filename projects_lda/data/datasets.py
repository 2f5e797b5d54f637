"""
Registration of LVIS-format datasets, independent of detectron2's built-in LVIS metadata.

Registered on ``import projects_lda.data`` (idempotent):

* ``lvis_embedded_{train,val,test}``: the synthetic long-tailed dataset of
  :mod:`projects_lda.data.embedded`, generated on first use into ``$LDA_EMBEDDED_ROOT``
  (default ``~/.cache/projects_lda/embedded_lvis_v1``; the variable is read on first use);
  ``val`` is for tuning, ``test`` for reporting.
* ``lvis_embedded_fed_{train,val,test}``: its federated (LVIS-annotated) variant, in the same
  folder with ``_federated`` appended.
* ``lvis_embedded_many_{train,val,test}`` and ``lvis_embedded_many_fed_{train,val,test}``: the
  many-class variant (:mod:`projects_lda.data.many_class`) at the benchmark's 300 classes,
  exhaustive and federated, and ``lvis_embedded_many1203_{train,val,test}`` at LVIS v1's 1,203
  classes, in the same folder with ``_many_class`` / ``_many_class_federated`` /
  ``_many_class_1203`` appended (generating one takes one to a few minutes).
* ``lvis_v1_train`` / ``lvis_v1_val`` (and LVIS v0.5 train/val): registered by detectron2 under
  ``$DETECTRON2_DATASETS``; re-registered with the project's loader (same records as
  detectron2's, the file parsed once) and their metadata completed with the fields below
  (see :func:`register_all_lvis`).
* user datasets listed in ``$LDA_EXTRA_DATASETS``, as semicolon-separated
  ``name:json_file:image_root`` entries, e.g.
  ``LDA_EXTRA_DATASETS="my_train:/data/my/train.json:/data/my/;my_val:/data/my/val.json:/data/my/"``
  (register them in other code with :func:`register_lvis_format`).

Like LVIS v1, images are found from ``coco_url`` (``.../<split folder>/<file>``) as
``image_root/<split folder>/<file>`` (detectron2's ``load_lvis_json``); ``image_root`` is the
folder that contains the split folders.

Metadata (``MetadataCatalog.get(name)``) of these datasets:

* ``thing_classes``: category names, indexed by contiguous id (= LVIS category id - 1);
* ``class_image_count``: in detectron2's own format (that of its LVIS metadata, read by its
  federated loss), ``[{"id": category_id, "image_count": n}, ...]``, one entry per category in
  id order; ``class_instance_count``: a list of the categories' ``instance_count`` (detectron2
  defines no format for it). Both come from the split's own file (computed from its annotations
  when the categories lack them);
* ``class_frequency``: list of ``'r'``/``'c'``/``'f'`` (from the categories, or LVIS's rule on the
  image counts);
* ``json_file``, ``image_root``, ``evaluator_type="lvis"``.

``evaluator_type`` (and, except for the embedded dataset, ``json_file`` / ``image_root``) are set
at registration. The other fields are *lazy*: they are read from the JSON's categories on first
access (which, for the embedded dataset, first generates it), or set when the dataset is loaded
by ``DatasetCatalog.get``, whichever comes first. For a training set the counts are training
statistics; LDA should take them from the training dataset's metadata.

The loader validates the file before returning, with errors that name the file and the offending
id or key: missing file, malformed JSON, missing keys, category ids that are not ``1..C``,
annotations with unknown category or image ids, invalid polygons, and missing image files
(existence only; image content is checked when it is read).
"""
import json
import logging
import os
from collections import defaultdict

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.structures import BoxMode

from .frequency_groups import lvis_frequency

__all__ = [
    "EXTRA_DATASETS_ENV",
    "class_metadata",
    "load_lvis_format",
    "loaded_class_lists",
    "register_lvis_format",
    "register_embedded_lvis",
    "register_all_lvis",
    "parse_dataset_spec",
    "register_from_env",
]

logger = logging.getLogger(__name__)

EXTRA_DATASETS_ENV = "LDA_EXTRA_DATASETS"
CLASS_KEYS = ("thing_classes", "class_image_count", "class_instance_count", "class_frequency")
_BUILTIN_LVIS = {
    "lvis_v1_train": "v1",
    "lvis_v1_val": "v1",
    "lvis_v0.5_train": "v0_5",
    "lvis_v0.5_val": "v0_5",
    "lvis_v0.5_val_rand_100": "v0_5",
}

_LAZY = {}  # dataset name -> (lazy metadata keys, function returning a dict of metadata)
_REGISTERED = {}  # dataset name -> what it was registered with (for idempotent registration)
# dataset name -> (json_file, (mtime, size), category ids (int32), per-record counts (int64)) of
# its last load in this process: the training-set class statistics (projects_lda.data.class_freq) are
# computed from these instead of loading the dataset again
_CLASS_LISTS = {}
# dataset name -> (json_file, (mtime, size), class_metadata()) of its last load in this process
_LOADED_METADATA = {}


class LazyMetadata(Metadata):
    """``Metadata`` whose keys registered in ``_LAZY`` are computed on first access."""

    def __getattr__(self, key):
        name = self.__dict__.get("name")
        entry = _LAZY.get(name) if name is not None else None
        if entry is not None and key in entry[0]:
            _resolve_lazy(self, name)
            if key in self.__dict__:
                return self.__dict__[key]
        return super().__getattr__(key)


def _resolve_lazy(meta, name):
    entry = _LAZY.pop(name, None)
    if entry is None:
        return
    try:
        values = entry[1]()
    except BaseException:
        _LAZY[name] = entry  # retry (and raise again) on the next access
        raise
    values = {k: v for k, v in values.items() if k in entry[0]}
    registered = MetadataCatalog.get(name)  # ``meta`` may be a copy of it
    for target in (meta,) if meta is registered else (meta, registered):
        target.set(**{k: v for k, v in values.items() if k not in target.__dict__})


def _lazy_metadata(name, keys, fn, replace=()):
    """
    Make ``MetadataCatalog.get(name)`` compute ``keys`` with ``fn()`` on first access. Keys in
    ``replace`` are computed even if they are set already (their old value is dropped).
    """
    meta = MetadataCatalog.get(name)
    if not isinstance(meta, LazyMetadata) or any(k in meta.__dict__ for k in replace):
        kept = {k: v for k, v in meta.as_dict().items() if k not in replace}
        meta = MetadataCatalog[name] = LazyMetadata(**kept)
    keys = tuple(k for k in keys if k not in meta.__dict__)
    if keys:
        _LAZY[name] = (keys, fn)
    return meta


def _set_metadata(name, values):
    """Set metadata of ``name`` now (taking those keys off its lazy keys)."""
    entry = _LAZY.get(name)
    if entry is not None:
        keys = tuple(k for k in entry[0] if k not in values)
        if keys:
            _LAZY[name] = (keys, entry[1])
        else:
            del _LAZY[name]
    MetadataCatalog.get(name).set(**values)


def _read_json(json_file):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"LVIS-format annotation file not found: {json_file}")
    logger.info("Parsing %s", json_file)
    try:
        with open(json_file) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"Malformed JSON in {json_file}: {e.msg} at line {e.lineno} column {e.colno} "
            f"(char {e.pos})"
        ) from e


def _require(entry, keys, what, json_file):
    missing = [k for k in keys if k not in entry]
    if missing:
        raise ValueError(f"{what} in {json_file} lacks the key(s) {missing}")


def _validate(data, json_file):
    """Check an LVIS-format dict; returns its categories sorted by id."""
    if not isinstance(data, dict):
        raise ValueError(f"{json_file} does not hold a JSON object (got {type(data).__name__})")
    _require(data, ("images", "annotations", "categories"), "The top-level object", json_file)
    cats = sorted(data["categories"], key=lambda c: c.get("id", -1))
    for cat in cats:
        _require(cat, ("id", "name"), f"Category {cat.get('id', cat)}", json_file)
    ids = [c["id"] for c in cats]
    if ids != list(range(1, len(cats) + 1)):
        bad = sorted(set(ids) ^ set(range(1, len(cats) + 1))) or ["duplicates"]
        raise ValueError(
            f"Category ids in {json_file} must be the contiguous range 1..{len(cats)} "
            f"(as in LVIS); found {len(cats)} categories with ids {ids[:5]}...{ids[-3:]} "
            f"(offending: {bad[:10]})"
        )
    image_ids = set()
    for img in data["images"]:
        _require(img, ("id", "height", "width", "coco_url"), f"Image {img.get('id')}", json_file)
        if img["id"] in image_ids:
            raise ValueError(f"Image id {img['id']} appears twice in {json_file}")
        image_ids.add(img["id"])
    ann_ids = set()
    for ann in data["annotations"]:
        what = f"Annotation {ann.get('id')}"
        _require(ann, ("id", "image_id", "category_id", "bbox", "segmentation"), what, json_file)
        if ann["id"] in ann_ids:
            raise ValueError(f"Annotation id {ann['id']} appears twice in {json_file}")
        ann_ids.add(ann["id"])
        if not 1 <= ann["category_id"] <= len(cats):
            raise ValueError(
                f"Annotation id {ann['id']} in {json_file} has category_id {ann['category_id']}, "
                f"which is not among the categories (ids 1..{len(cats)})"
            )
        if ann["image_id"] not in image_ids:
            raise ValueError(
                f"Annotation id {ann['id']} in {json_file} has image_id {ann['image_id']}, "
                f"which is not among the images"
            )
        segm = ann["segmentation"]
        if not segm or any(len(p) < 6 or len(p) % 2 for p in segm):
            raise ValueError(
                f"Annotation id {ann['id']} in {json_file} has an invalid segmentation: expected "
                "a non-empty list of polygons [x1, y1, x2, y2, ...] with at least 3 points"
            )
    return cats


def class_metadata(data, json_file):
    """
    Per-class metadata (:data:`CLASS_KEYS`) of a validated LVIS-format dict. Counts missing from
    the categories are computed from the annotations of the same file.
    """
    cats = _validate(data, json_file)
    images, instances = defaultdict(set), defaultdict(int)
    if any("image_count" not in c or "instance_count" not in c for c in cats):
        for ann in data["annotations"]:
            images[ann["category_id"]].add(ann["image_id"])
            instances[ann["category_id"]] += 1
    image_count = [c.get("image_count", len(images[c["id"]])) for c in cats]
    if any("frequency" not in c for c in cats):
        logger.warning("%s: categories lack 'frequency' (LVISEval needs it)", json_file)
    return {
        "thing_classes": [c["name"] for c in cats],
        "class_image_count": [
            {"id": c["id"], "image_count": n} for c, n in zip(cats, image_count)
        ],
        "class_instance_count": [c.get("instance_count", instances[c["id"]]) for c in cats],
        "class_frequency": [
            c.get("frequency", lvis_frequency(n)) for c, n in zip(cats, image_count)
        ],
    }


def _image_prefix(image_root):
    """detectron2 concatenates ``image_root + split_folder``: make sure a separator ends it."""
    image_root = os.path.expanduser(str(image_root))
    return image_root if not image_root or image_root.endswith(("/", os.sep)) else image_root + "/"


def _file_stamp(path):
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _lvis_records(data, image_root):
    """
    detectron2 dataset dicts of a validated LVIS-format dict, as detectron2's ``load_lvis_json``
    makes them (records sorted by image id, annotations in file order, ``category_id`` = LVIS id
    - 1, file name from ``coco_url``), from the dict already parsed instead of parsing the file a
    second time. The records share the boxes and polygons of ``data``.
    """
    anns_of = defaultdict(list)
    for ann in data["annotations"]:
        anns_of[ann["image_id"]].append(ann)
    records = []
    for img in sorted(data["images"], key=lambda i: i["id"]):
        split_folder, file_name = img["coco_url"].split("/")[-2:]
        records.append(
            {
                "file_name": os.path.join(image_root + split_folder, file_name),
                "height": img["height"],
                "width": img["width"],
                "not_exhaustive_category_ids": img.get("not_exhaustive_category_ids", []),
                "neg_category_ids": img.get("neg_category_ids", []),
                "image_id": img["id"],
                "annotations": [
                    {
                        "bbox": ann["bbox"],
                        "bbox_mode": BoxMode.XYWH_ABS,
                        "category_id": ann["category_id"] - 1,
                        "segmentation": ann["segmentation"],
                    }
                    for ann in anns_of.pop(img["id"], ())
                ],
            }
        )
    return records


def loaded_class_lists(name):
    """
    ``(category_ids, counts)`` of the records of dataset ``name`` as last loaded by
    :func:`load_lvis_format` in this process: the contiguous category ids of all annotations
    (int32, record after record) and the number of annotations of each record (int64). None when
    it was not loaded here or its file changed since. O(instances) memory, not images x classes.
    """
    entry = _CLASS_LISTS.get(name)
    if entry is None:
        return None
    json_file, stamp, cats, counts = entry
    try:
        if _file_stamp(json_file) != stamp:
            return None
    except OSError:
        return None
    return cats, counts


def load_lvis_format(json_file, image_root, dataset_name=None, check_images=True):
    """
    Validate an LVIS-format JSON file and load it into detectron2 dataset dicts, the same dicts
    as detectron2's ``load_lvis_json`` (the file is parsed once).

    Args:
        json_file (str): the LVIS-format annotation file.
        image_root (str): folder holding the split folders named in the images' ``coco_url``.
        dataset_name (str or None): if given, the per-class metadata of this dataset is set, and
            its per-record class lists are kept for :func:`loaded_class_lists`.
        check_images (bool): check that every image file exists.

    Returns:
        list[dict]: detectron2 dataset dicts (``category_id`` = LVIS id - 1).
    """
    return _load(json_file, _image_prefix(image_root), dataset_name, check_images, CLASS_KEYS)


def _load(json_file, image_root, dataset_name, check_images, metadata_keys):
    """:func:`load_lvis_format` setting only ``metadata_keys`` of the per-class metadata."""
    stamp = _file_stamp(json_file) if os.path.isfile(json_file) else None
    data = _read_json(json_file)
    meta = class_metadata(data, json_file)
    dicts = _lvis_records(data, image_root)
    del data
    logger.info("Loaded %d images in the LVIS format from %s", len(dicts), json_file)
    if dataset_name is not None:
        _LOADED_METADATA[dataset_name] = (json_file, stamp, meta)
        _set_metadata(dataset_name, {k: meta[k] for k in metadata_keys})
        counts = np.fromiter((len(d["annotations"]) for d in dicts), np.int64, len(dicts))
        cats = np.fromiter(
            (a["category_id"] for d in dicts for a in d["annotations"]), np.int32, counts.sum()
        )
        _CLASS_LISTS[dataset_name] = (json_file, stamp, cats, counts)
    if check_images:
        missing = [d for d in dicts if not os.path.isfile(d["file_name"])]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(dicts)} images listed in {json_file} do not exist, "
                f"e.g. image id {missing[0]['image_id']}: {missing[0]['file_name']} "
                f"(image_root={image_root!r})"
            )
    return dicts


def _check_reregistration(name, spec):
    if name in _REGISTERED:
        if _REGISTERED[name] != spec:
            raise ValueError(
                f"Dataset '{name}' is already registered with {_REGISTERED[name]}, not {spec}"
            )
        return True
    if name in DatasetCatalog.list():
        raise ValueError(f"Dataset '{name}' is already registered (by another module)")
    return False


def register_lvis_format(name, json_file, image_root, *, check_images=True):
    """
    Register an LVIS-format dataset (see the module docstring for its metadata). Registering the
    same name again with the same arguments does nothing; with other arguments it raises.
    Nothing is read at registration.
    """
    json_file = os.path.expanduser(str(json_file))
    image_root = _image_prefix(image_root)
    if _check_reregistration(name, ("lvis_format", json_file, image_root, check_images)):
        return
    DatasetCatalog.register(
        name, lambda: load_lvis_format(json_file, image_root, name, check_images)
    )
    _lazy_metadata(name, CLASS_KEYS, lambda: class_metadata(_read_json(json_file), json_file))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="lvis")
    _REGISTERED[name] = ("lvis_format", json_file, image_root, check_images)


def register_embedded_lvis(root=None, prefix="lvis_embedded", variant="exhaustive"):
    """
    Register ``<prefix>_train``, ``<prefix>_val`` (for tuning) and ``<prefix>_test`` (for
    reporting): the embedded dataset's ``variant`` (a key of
    :data:`~projects_lda.data.embedded.VARIANTS`: "exhaustive", "federated", "many_class",
    "many_class_federated", "many_class_1203", "many_class_1203_federated") in ``root`` (None:
    :func:`~projects_lda.data.embedded.get_embedded_root`, resolved on first use). Nothing is
    generated before the first ``DatasetCatalog.get`` or lazy metadata access.
    """
    if _check_reregistration(f"{prefix}_train", ("embedded", root, variant)):
        return
    state = {}

    def resolve_root():
        if "root" not in state:
            from .embedded import VARIANTS, ensure_embedded_lvis, get_embedded_root

            state["root"] = ensure_embedded_lvis(
                root or get_embedded_root(variant), **VARIANTS[variant]
            )
        return state["root"]

    for split in ("train", "val", "test"):
        name = f"{prefix}_{split}"
        _check_reregistration(name, ("embedded", root, variant))

        def paths(split=split):
            from .embedded import SPLIT_JSON

            r = resolve_root()
            return os.path.join(r, SPLIT_JSON[split]), _image_prefix(r)

        def load(name=name, paths=paths):
            json_file, image_root = paths()
            _set_metadata(name, {"json_file": json_file, "image_root": image_root})
            return load_lvis_format(json_file, image_root, name, check_images=True)

        def metadata(paths=paths):
            json_file, image_root = paths()
            meta = class_metadata(_read_json(json_file), json_file)
            return dict(meta, json_file=json_file, image_root=image_root)

        DatasetCatalog.register(name, load)
        _lazy_metadata(name, CLASS_KEYS + ("json_file", "image_root"), metadata)
        MetadataCatalog.get(name).set(evaluator_type="lvis")
        _REGISTERED[name] = ("embedded", root, variant)


def _builtin_categories(version):
    if version == "v1":
        from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES
    else:
        from detectron2.data.datasets.lvis_v0_5_categories import LVIS_CATEGORIES
    return sorted(LVIS_CATEGORIES, key=lambda c: c["id"])


def _builtin_json(json_file):
    if not os.path.isfile(json_file):
        raise FileNotFoundError(
            f"LVIS annotation file not found: {json_file} (detectron2 looks for LVIS "
            "under $DETECTRON2_DATASETS, default ./datasets)"
        )
    return json_file


def _loaded_metadata(name, json_file):
    """``class_metadata`` of ``json_file`` as last loaded under ``name`` here, if unchanged."""
    entry = _LOADED_METADATA.get(name)
    if entry is None or entry[0] != json_file:
        return None
    try:
        return entry[2] if _file_stamp(json_file) == entry[1] else None
    except OSError:
        return None


def register_all_lvis():
    """
    Take over the LVIS splits registered by detectron2 (:data:`_BUILTIN_LVIS`):

    * their loader is replaced (``DatasetCatalog.remove`` then ``register`` under the same name)
      by the project's single-parse loader, with the same records as detectron2's
      ``load_lvis_json`` (and, like it, no check of the image files), which keeps the class
      lists of the records for the class statistics of the first training step;
    * their metadata keeps detectron2's values (``thing_classes``, ``json_file``,
      ``image_root``) and is completed: ``class_frequency`` (from detectron2's category lists)
      and ``evaluator_type`` now; ``class_image_count`` and ``class_instance_count`` from the
      split's JSON, when the split is loaded or, lazily, on first access (from the statistics of
      the load when it already happened in this process). detectron2 0.6 sets neither count;
      detectron2 main sets ``class_image_count`` of every v1 split to the v1 *training* counts,
      which is replaced by the split's own (same format).

    Splits detectron2 did not register are skipped.
    """
    count_keys = ("class_image_count", "class_instance_count")
    for name, version in _BUILTIN_LVIS.items():
        if name not in DatasetCatalog.list() or name in _REGISTERED:
            continue
        meta = MetadataCatalog.get(name)
        json_file, image_root = meta.json_file, meta.image_root

        def load(name=name, json_file=json_file, image_root=image_root):
            # image_root as detectron2 registered it: it joins ``image_root + split_folder``
            return _load(_builtin_json(json_file), image_root, name, False, count_keys)

        def counts(name=name, json_file=json_file):
            meta = _loaded_metadata(name, json_file)
            if meta is None:
                meta = class_metadata(_read_json(_builtin_json(json_file)), json_file)
            return {k: meta[k] for k in count_keys}

        DatasetCatalog.remove(name)
        DatasetCatalog.register(name, load)
        meta = _lazy_metadata(name, count_keys, counts, replace=count_keys)
        frequency = [c["frequency"] for c in _builtin_categories(version)]
        meta.set(class_frequency=frequency, evaluator_type="lvis")
        _REGISTERED[name] = ("builtin", version)


def parse_dataset_spec(spec):
    """Parse ``"name:json_file:image_root"`` into a (name, json_file, image_root) tuple."""
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            f"Invalid dataset spec {spec!r}: expected 'name:json_file:image_root' "
            f"(e.g. in ${EXTRA_DATASETS_ENV}, entries separated by ';')"
        )
    return tuple(parts)


def register_from_env(env_var=EXTRA_DATASETS_ENV):
    """Register the datasets listed in ``$env_var`` (see the module docstring); returns names."""
    names = []
    for spec in os.environ.get(env_var, "").split(";"):
        if spec.strip():
            name, json_file, image_root = parse_dataset_spec(spec)
            register_lvis_format(name, json_file, image_root)
            names.append(name)
    return names
