"""
Registration of COCO- and LVIS-format datasets, independent of detectron2's built-in LVIS
metadata.

Registered on ``import projects_lda`` (idempotent; the generated ``lvis_embedded_*`` by
:mod:`projects_lda.worlds.datasets` through :func:`register_generated_lvis`):

* ``lvis_embedded_{train,val,test}``: the synthetic long-tailed dataset of
  :mod:`projects_lda.worlds.embedded`, generated on first use into ``$LDA_EMBEDDED_ROOT``
  (default ``~/.cache/projects_lda/embedded_lvis_v1``; the variable is read on first use);
  ``val`` is for tuning, ``test`` for reporting.
* ``lvis_embedded_fed_{train,val,test}``: its federated (LVIS-annotated) variant, in the same
  folder with ``_federated`` appended.
* ``lvis_embedded_many_{train,val,test}`` and ``lvis_embedded_many_fed_{train,val,test}``: the
  many-class variant (:mod:`projects_lda.worlds.many_class`) at the benchmark's 300 classes,
  exhaustive and federated, and ``lvis_embedded_many1203_{train,val,test}`` at LVIS v1's 1,203
  classes, in the same folder with ``_many_class`` / ``_many_class_federated`` /
  ``_many_class_1203`` appended (generating one takes one to a few minutes).
* ``lda_lvis_v1_train`` / ``lda_lvis_v1_val`` (and ``lda_`` + LVIS v0.5's splits): the LVIS
  files detectron2 registers under ``$DETECTRON2_DATASETS`` as ``lvis_v1_train`` etc., registered
  a second time under these names with the project's loader (same records as detectron2's, the
  file parsed once) and the metadata below (see :func:`register_all_lvis`); detectron2's own
  registrations stay as they are.
* user datasets listed in ``$LDA_EXTRA_DATASETS``, as semicolon-separated
  ``name:json_file:image_root`` entries (optionally ``:federated`` or ``:exhaustive`` appended
  to force how the file is evaluated), e.g.
  ``LDA_EXTRA_DATASETS="my_train:/data/my/train.json:/data/my/;my_val:/data/my/val.json:/data/my/"``
  (register them in other code with :func:`register_lvis_format`).

What a file may hold (COCO and LVIS formats, sparse category ids, ``file_name`` or
``coco_url``, polygons / RLE / no masks, crowd regions) and what is refused:
:mod:`projects_lda.data.annotation_file`. Images are found from ``file_name`` relative to
``image_root`` (COCO, detectron2's ``load_coco_json``) or, without it, from ``coco_url``
(``.../<split folder>/<file>``) as ``image_root/<split folder>/<file>`` (LVIS v1, detectron2's
``load_lvis_json``).

Metadata (``MetadataCatalog.get(name)``) of these datasets:

* ``thing_classes``: category names, indexed by contiguous id (categories in id order);
* ``thing_dataset_id_to_contiguous_id``: the file's category id -> contiguous id (detectron2's
  key; evaluation and written results use the file's ids);
* ``federated`` (an image of the file lists a verified-negative category, or the dataset was
  registered so: :func:`projects_lda.data.validation.annotation_kind`), ``annotation_kind``
  (the kind forced at registration, or None),
  ``has_masks`` (False for a box-only file) and ``has_rle_masks``;
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
id or key (:mod:`projects_lda.data.annotation_file`), and checks that the image files exist
(existence only; image content is checked when it is read).
"""
import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from . import annotation_file

__all__ = [
    "EXTRA_DATASETS_ENV",
    "class_metadata",
    "load_lvis_format",
    "CLASS_LISTS_KEY",
    "LVIS_PREFIX",
    "register_lvis_format",
    "register_generated_lvis",
    "register_all_lvis",
    "parse_dataset_spec",
    "register_from_env",
    "check_training_datasets",
    "ANNOTATION_KINDS",
]

logger = logging.getLogger(__name__)

EXTRA_DATASETS_ENV = "LDA_EXTRA_DATASETS"
# per-class and per-file metadata of a loaded file (annotation_file.class_metadata)
CLASS_KEYS = ("thing_classes", "thing_dataset_id_to_contiguous_id", "class_image_count",
              "class_instance_count", "class_frequency", "federated", "has_masks",
              "has_rle_masks")
# the annotation kinds a file can be forced to at registration (None: from its fields)
ANNOTATION_KINDS = ("federated", "exhaustive")
# the project's LVIS splits are detectron2's names with this prefix (register_all_lvis)
LVIS_PREFIX = "lda_"
_BUILTIN_LVIS = {
    "lvis_v1_train": "v1",
    "lvis_v1_val": "v1",
    "lvis_v0.5_train": "v0_5",
    "lvis_v0.5_val": "v0_5",
    "lvis_v0.5_val_rand_100": "v0_5",
}

_LAZY = {}  # dataset name -> (lazy metadata keys, function returning a dict of metadata)
_REGISTERED = {}  # dataset name -> what it was registered with (for idempotent registration)
#: Metadata key of a dataset's class lists as last loaded by :func:`load_lvis_format` in this
#: process, ``(json_file, (mtime, size), (category ids int32, annotations per record int64,
#: crowd flags bool))`` (:func:`projects_lda.data.annotation_file.class_lists`): the training-set
#: class statistics (:mod:`projects_lda.data.class_freq`) are computed from them instead of
#: loading the dataset again.
CLASS_LISTS_KEY = "class_lists"
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


def _set_class_lists(name, value):
    """Set the class lists of ``name`` (:data:`CLASS_LISTS_KEY`), replacing those of an earlier
    load (``Metadata.set`` refuses to change a value)."""
    meta = MetadataCatalog.get(name)
    meta.__dict__.pop(CLASS_LISTS_KEY, None)
    meta.set(**{CLASS_LISTS_KEY: value})


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


def class_metadata(data, json_file):
    """
    Per-class metadata (:data:`CLASS_KEYS`) of a parsed COCO- or LVIS-format dict, validated
    (:func:`projects_lda.data.annotation_file.class_metadata`). Counts missing from the
    categories are computed from the annotations of the same file.
    """
    return annotation_file.class_metadata(data, json_file)


def _image_prefix(image_root):
    """detectron2 concatenates ``image_root + split_folder``: make sure a separator ends it."""
    image_root = os.path.expanduser(str(image_root))
    return image_root if not image_root or image_root.endswith(("/", os.sep)) else image_root + "/"


def _file_stamp(path):
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _check_kind(annotations):
    if annotations is not None and annotations not in ANNOTATION_KINDS:
        raise ValueError(f"annotations={annotations!r}: expected None (decided by the file's "
                         f"fields) or one of {ANNOTATION_KINDS}")


def load_lvis_format(json_file, image_root, dataset_name=None, check_images=True, *,
                     annotations=None):
    """
    Validate a COCO- or LVIS-format JSON file (:mod:`projects_lda.data.annotation_file`) and load
    it into detectron2 dataset dicts, the dicts detectron2's ``load_coco_json`` (or, for an LVIS
    file, ``load_lvis_json``) makes (the file is parsed once).

    Args:
        json_file (str): the annotation file.
        image_root (str): the folder the images' ``file_name`` is relative to, or (LVIS) that
            holds the split folders named in their ``coco_url``.
        dataset_name (str or None): if given, the per-class metadata of this dataset is set, and
            its per-record class lists in its metadata (:data:`CLASS_LISTS_KEY`).
        check_images (bool): check that every image file exists.
        annotations (str or None): "federated" or "exhaustive" to force how the file is
            evaluated; None: federated when an image has LVIS's ``neg_category_ids`` or
            ``not_exhaustive_category_ids``.

    Returns:
        list[dict]: detectron2 dataset dicts (contiguous ``category_id``, in category id order).
    """
    _check_kind(annotations)
    return _load(json_file, _image_prefix(image_root), dataset_name, check_images, CLASS_KEYS,
                 annotations=annotations)


def _load(json_file, image_root, dataset_name, check_images, metadata_keys, *, annotations=None,
          path_from=None):
    """:func:`load_lvis_format` setting only ``metadata_keys`` of the per-class metadata."""
    stamp = _file_stamp(json_file) if os.path.isfile(json_file) else None
    data = _read_json(json_file)
    meta = annotation_file.class_metadata(data, json_file, annotations=annotations)
    for warning in meta["warnings"]:
        logger.warning(warning)
    dicts = annotation_file.records(data, image_root, meta["thing_dataset_id_to_contiguous_id"],
                                    meta["federated"], path_from)
    del data
    logger.info("Loaded %d images (%s, %s) from %s", len(dicts),
                "federated" if meta["federated"] else "exhaustive",
                "box-only" if meta["has_masks"] is False else "with masks", json_file)
    if dataset_name is not None:
        _LOADED_METADATA[dataset_name] = (json_file, stamp, meta)
        _set_metadata(dataset_name, {k: meta[k] for k in metadata_keys})
        _set_class_lists(dataset_name, (json_file, stamp, annotation_file.class_lists(dicts)))
    if check_images:
        missing = [d for d in dicts if not os.path.isfile(d["file_name"])]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(dicts)} images listed in {json_file} do not exist, "
                f"e.g. image id {missing[0]['image_id']}: {missing[0]['file_name']} "
                f"(image_root={image_root!r})"
            )
    return dicts


def _file_metadata(json_file, annotations):
    return annotation_file.class_metadata(_read_json(json_file), json_file,
                                          annotations=annotations)


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


def register_lvis_format(name, json_file, image_root, *, check_images=True, annotations=None):
    """
    Register a COCO- or LVIS-format dataset (see the module docstring for its metadata;
    ``annotations`` as in :func:`load_lvis_format`). Registering the same name again with the
    same arguments does nothing; with other arguments it raises. Nothing is read at
    registration.
    """
    _check_kind(annotations)
    json_file = os.path.expanduser(str(json_file))
    image_root = _image_prefix(image_root)
    spec = ("lvis_format", json_file, image_root, check_images, annotations)
    if _check_reregistration(name, spec):
        return
    DatasetCatalog.register(
        name, lambda: load_lvis_format(json_file, image_root, name, check_images,
                                       annotations=annotations)
    )
    _lazy_metadata(name, CLASS_KEYS, lambda: _file_metadata(json_file, annotations))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="lvis",
                                  annotation_kind=annotations)
    _REGISTERED[name] = spec


def register_generated_lvis(name, paths, spec):
    """
    Register an LVIS-format dataset whose files are written on first use: ``paths()`` returns
    ``(json_file, image_root)``, writing them first when needed, and is called on the first
    ``DatasetCatalog.get`` or lazy metadata access, not before. ``spec`` says what ``name`` is
    registered with: registering it again with the same ``spec`` does nothing; with another, or
    over another module's dataset, it raises.
    """
    if _check_reregistration(name, spec):
        return

    def load():
        json_file, image_root = paths()
        image_root = _image_prefix(image_root)
        _set_metadata(name, {"json_file": json_file, "image_root": image_root})
        return load_lvis_format(json_file, image_root, name, check_images=True)

    def metadata():
        json_file, image_root = paths()
        meta = class_metadata(_read_json(json_file), json_file)
        return dict(meta, json_file=json_file, image_root=_image_prefix(image_root))

    DatasetCatalog.register(name, load)
    _lazy_metadata(name, CLASS_KEYS + ("json_file", "image_root"), metadata)
    MetadataCatalog.get(name).set(evaluator_type="lvis")
    _REGISTERED[name] = spec


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
    Register the LVIS splits that detectron2 registered (:data:`_BUILTIN_LVIS`) a second time,
    as :data:`LVIS_PREFIX` + their name (``lda_lvis_v1_train``, ...), leaving detectron2's own
    registrations as they are:

    * the loader is the project's single-parse one, with the same records as detectron2's
      ``load_lvis_json`` (and, like it, no check of the image files), which keeps the class lists
      of the records for the class statistics of the first training step;
    * the metadata takes detectron2's values (``thing_classes``, ``json_file``, ``image_root``)
      and adds ``class_frequency`` (from detectron2's category lists) and ``evaluator_type`` now;
      ``class_image_count`` and ``class_instance_count`` from the split's JSON, when the split is
      loaded or, lazily, on first access (from the statistics of the load when it already
      happened in this process). They are the split's own counts (detectron2 main's metadata
      gives every v1 split the v1 *training* counts).

    Splits detectron2 did not register are skipped.
    """
    count_keys = ("class_image_count", "class_instance_count")
    for builtin, version in _BUILTIN_LVIS.items():
        name = LVIS_PREFIX + builtin
        if builtin not in DatasetCatalog.list() or name in _REGISTERED:
            continue
        _check_reregistration(name, ("builtin", version))
        d2_meta = MetadataCatalog.get(builtin)
        json_file, image_root = d2_meta.json_file, d2_meta.image_root

        def load(name=name, json_file=json_file, image_root=image_root):
            # image_root as detectron2 registered it: it joins ``image_root + split_folder``
            return _load(_builtin_json(json_file), image_root, name, False, count_keys,
                         path_from="coco_url")

        def counts(name=name, json_file=json_file):
            meta = _loaded_metadata(name, json_file)
            if meta is None:
                meta = class_metadata(_read_json(_builtin_json(json_file)), json_file)
            return {k: meta[k] for k in count_keys}

        DatasetCatalog.register(name, load)
        meta = _lazy_metadata(name, count_keys, counts)
        cats = _builtin_categories(version)
        ids = d2_meta.get("thing_dataset_id_to_contiguous_id", None)
        meta.set(thing_classes=list(d2_meta.thing_classes), json_file=json_file,
                 image_root=image_root, class_frequency=[c["frequency"] for c in cats],
                 evaluator_type="lvis", federated=True, has_masks=True, has_rle_masks=False,
                 thing_dataset_id_to_contiguous_id=ids or {c["id"]: i for i, c in enumerate(cats)})
        _REGISTERED[name] = ("builtin", version)


def parse_dataset_spec(spec):
    """
    Parse ``"name:json_file:image_root"`` or ``"name:json_file:image_root:kind"`` (kind: one of
    :data:`ANNOTATION_KINDS`, forcing how the file is evaluated) into a (name, json_file,
    image_root, kind or None) tuple.
    """
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError(
            f"Invalid dataset spec {spec!r}: expected 'name:json_file:image_root' or "
            f"'name:json_file:image_root:federated|exhaustive' (e.g. in ${EXTRA_DATASETS_ENV}, "
            "entries separated by ';')"
        )
    if len(parts) == 4 and parts[3] not in ANNOTATION_KINDS:
        raise ValueError(f"Invalid dataset spec {spec!r}: its fourth field {parts[3]!r} is not "
                         f"one of {ANNOTATION_KINDS}")
    return tuple(parts[:3]) + (parts[3] if len(parts) == 4 else None,)


def register_from_env(env_var=EXTRA_DATASETS_ENV):
    """Register the datasets listed in ``$env_var`` (see the module docstring); returns names."""
    names = []
    for spec in os.environ.get(env_var, "").split(";"):
        if spec.strip():
            name, json_file, image_root, kind = parse_dataset_spec(spec)
            register_lvis_format(name, json_file, image_root, annotations=kind)
            names.append(name)
    return names


def check_training_datasets(cfg):
    """
    Raises before training when ``cfg`` cannot train on its ``DATASETS.TRAIN`` as loaded (their
    metadata): another number of categories than ``MODEL.ROI_HEADS.NUM_CLASSES``, masks asked
    for (``MODEL.MASK_ON``) on a box-only file, or RLE masks with polygon mask targets
    (``INPUT.MASK_FORMAT``). The error names the dataset, its file and the key to set. Datasets
    of other loaders (no such metadata) are not checked.
    """
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    for name in cfg.DATASETS.TRAIN:
        meta = MetadataCatalog.get(name).__dict__  # loaded: no lazy parse from here
        where = f"training dataset {name!r} ({meta.get('json_file', 'no json_file')})"
        classes = meta.get("thing_classes")
        if name in _REGISTERED and classes is not None and len(classes) != num_classes:
            raise ValueError(f"{where} has {len(classes)} categories, but "
                             f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}: set "
                             f"MODEL.ROI_HEADS.NUM_CLASSES {len(classes)}")
        if cfg.MODEL.MASK_ON and meta.get("has_masks") is False:
            raise ValueError(f"{where} has boxes only (no annotation has a 'segmentation'): "
                             "set MODEL.MASK_ON False to train a box detector on it")
        if cfg.MODEL.MASK_ON and meta.get("has_rle_masks") and cfg.INPUT.MASK_FORMAT == "polygon":
            raise ValueError(f"{where} has RLE masks, which polygon mask targets cannot hold: "
                             "set INPUT.MASK_FORMAT bitmask")
