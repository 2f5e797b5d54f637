"""
The icon world: a long-tailed LVIS-format dataset of real things, OpenMoji icons on real
photographs, with LVIS v1's vocabulary and image-count distribution (docs/icon_world.md).

* **Classes** are icons of :func:`~projects_lda.worlds.icon_catalog.icon_catalog`. The icons
  matched to an LVIS v1 class (``openmoji_lvis_v1.tsv``) come first and carry that class's name,
  synonyms, synset and definition; the rest of the classes are further icons in the catalog's
  order (things before people, symbols, keycaps, letters and flags).
* **Training image counts** follow LVIS v1's own counts (``lvis_v1_image_count.json``): the
  ``num_classes`` counts at evenly spaced ranks of LVIS's sorted counts (all of them at 1,203
  classes), mapped by the power ``n -> n ** a`` that keeps 1 at 1 and sends LVIS's largest count
  (1,977 of 100,170 images) to the same share of ``num_train_images``. An LVIS-named class takes
  the count at its own LVIS class's rank (at 1,203 classes its own count; with fewer classes
  the nearest of the evenly spaced ranks); the other classes take the remaining ranks in a random
  order. The frequency groups are LVIS's rule with its thresholds mapped by the same power (rare
  up to ``round(10 ** a)`` images, common up to ``round(100 ** a)``); counts are kept inside
  their LVIS class's band, so the groups keep LVIS's proportions (337 / 461 / 405 at 1,203
  classes). :func:`image_count_plan` returns the plan.
* **Scenes.** The training images hold the planned (image, class) pairs, dealt to images of
  random capacity (so categories per image vary as in LVIS, 1 to :data:`MAX_CLASSES_PER_IMAGE`);
  a class of an image has further instances with probability :data:`DUPLICATE_PROB` each (up to
  :data:`MAX_COPIES`). Instance sizes are log-uniform between :data:`SIZE_RANGE` of the image
  side (many small ones), with occlusion, cuts at the border, rotation, blur and colour changes
  (:mod:`.icon_render`). Masks are the icons' alpha less what later instances cover, written as
  compressed RLE; boxes are the masks' extents.
* **Val and test** are balanced: every class is in the same number of images; their categories
  carry the training counts and groups (LVIS's evaluation groups APr/APc/APf by them).
* **Federated** (``federated=True``): every split is annotated as LVIS is, as
  :mod:`projects_lda.worlds.federated` does: verified negatives (about :data:`NEGATIVES_PER_IMAGE`
  an image), not-exhaustive classes, and unlabelled objects of classes an image was never checked
  for; in training these come on top of the planned labelled images.

Layout (as :mod:`projects_lda.worlds.embedded`'s: ``<root>/lvis_icons_<split>.json``,
``<root>/<split>/<id>.png``, ``<root>/meta.json`` written last). The same parameters give the
same files. Command line::

    python -m projects_lda.worlds.icons --out DIR [--seed 0] [--num-classes 1203] \\
        [--num-train-images N] [--num-val-images N] [--num-test-images N] [--image-size PX] \\
        [--federated]
    python -m projects_lda.worlds.icons --out DIR --setting icons_small
"""
import argparse
import functools
import hashlib
import json
import logging
import os
import time

import cv2
import numpy as np

from . import icon_render
from .folders import generate_into_place, read_meta
from .icon_catalog import icon_catalog, svg_path

__all__ = [
    "ICON_DEFAULTS",
    "SETTINGS",
    "ensure_icon_lvis",
    "generate_icon_lvis",
    "get_icon_root",
    "image_count_plan",
    "select_classes",
]

logger = logging.getLogger(__name__)

GENERATOR_NAME = "projects_lda.worlds.icons"
GENERATOR_VERSION = 1  # bump whenever the files change for the same parameters
SPLITS = ("train", "val", "test")
SPLIT_JSON = {s: f"lvis_icons_{s}.json" for s in SPLITS}
META_FILE = "meta.json"
ROOT_ENV = "LDA_ICONS_ROOT"
_URL = "http://icons.invalid/{split}/{file}"  # LVIS v1 style; the last two parts make the path

LVIS_RARE_MAX, LVIS_COMMON_MAX = 10, 100  # LVIS's rule on training image counts
MAX_CLASSES_PER_IMAGE = 16
DUPLICATE_PROB = 0.3  # another instance of a class of an image, again and again, ...
MAX_COPIES = 4  # ... up to this many instances of a class in an image
SIZE_RANGE = (0.09, 0.5)  # an instance's longer side / the image side, log-uniform
NEGATIVES_PER_IMAGE = 6.0  # federated: verified-absent categories an image (expected)
TEST_STREAM = 2  # the test split's random stream is (seed, TEST_STREAM)

ICON_DEFAULTS = {
    "seed": 0,
    "num_classes": 1203,
    "num_train_images": 6000,
    "num_val_images": 800,
    "num_test_images": 1600,
    "image_size": 192,
    "classes_per_image": 5.0,  # labelled classes a training image, on average (LVIS v1: 3.6)
    "federated": True,
}
# The benchmark's settings (docs/icon_world.md gives their cost table and why these sizes).
SETTINGS = {
    "icons_1203": dict(ICON_DEFAULTS),
    "icons_small": {**ICON_DEFAULTS, "num_classes": 100, "num_train_images": 1500,
                    "num_val_images": 300, "num_test_images": 600, "image_size": 160,
                    "federated": False},
}


@functools.lru_cache(maxsize=1)
def lvis_v1_image_counts():
    """LVIS v1's training image count of each category, indexed by category id - 1."""
    path = os.path.join(os.path.dirname(__file__), "lvis_v1_image_count.json")
    with open(path) as f:
        return np.array(json.load(f)["image_count"], dtype=np.int64)


def _lvis_categories():
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    return {c["id"]: c for c in LVIS_CATEGORIES}


def _band(count):
    return 0 if count <= LVIS_RARE_MAX else (1 if count <= LVIS_COMMON_MAX else 2)


def select_classes(num_classes):
    """
    The icons that become the ``num_classes`` classes, by category id: every LVIS-matched icon
    while there are at least as many classes (then the other icons in the catalog's order);
    with fewer classes, the matched icons whose LVIS counts lie nearest to evenly spaced ranks
    of LVIS's sorted counts, so that the groups keep LVIS's proportions.
    """
    catalog = icon_catalog()
    if not 1 <= num_classes <= len(catalog):
        raise ValueError(f"num_classes must be in [1, {len(catalog)}] (the icons of the "
                         f"catalog), got {num_classes}")
    matched = [i for i in catalog if i.lvis_id]
    others = [i for i in catalog if not i.lvis_id]
    if num_classes >= len(matched):
        return matched + others[: num_classes - len(matched)]
    counts = lvis_v1_image_counts()
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    fractions = np.array([rank[i.lvis_id - 1] for i in matched], dtype=float) / len(counts)
    chosen, free = [], np.ones(len(matched), bool)
    for q in (np.arange(num_classes) + 0.5) / num_classes:
        d = np.where(free, np.abs(fractions - q), np.inf)
        j = int(np.argmin(d))
        free[j] = False
        chosen.append(j)
    return [matched[j] for j in sorted(chosen)]


def _mapped(lvis_counts, a, num_train_images):
    """LVIS counts mapped by ``n -> round(n ** a)``, kept inside their LVIS band's mapped range;
    returns (counts, rare_max, common_max)."""
    rare_max, common_max = round(LVIS_RARE_MAX**a), round(LVIS_COMMON_MAX**a)
    bands = np.array([_band(int(c)) for c in lvis_counts])
    lo = np.array([1, rare_max + 1, common_max + 1])[bands]
    hi = np.array([rare_max, common_max, num_train_images])[bands]
    counts = np.clip(np.round(lvis_counts.astype(float) ** a).astype(np.int64), lo, hi)
    return counts, rare_max, common_max


def _rank_positions(classes, lvis, rng):
    """
    Per class, its position among the ``len(classes)`` evenly spaced ranks of LVIS's sorted
    counts: an LVIS-named class the one nearest its own LVIS class's rank (exactly it at 1,203
    classes; named classes keep their order), the other classes the free ones in random order.
    """
    n = len(classes)
    rank = np.empty(len(lvis), np.int64)
    rank[np.argsort(-lvis, kind="stable")] = np.arange(len(lvis))
    named = [k for k, c in enumerate(classes) if c.lvis_id]
    wanted = np.array([rank[classes[k].lvis_id - 1] * n // len(lvis) for k in named], np.int64)
    order = np.argsort(wanted, kind="stable")
    taken = np.empty(len(named), np.int64)
    prev = -1
    for j in order:  # distinct, increasing positions ...
        prev = taken[j] = max(wanted[j], prev + 1)
    for i, j in enumerate(order[::-1]):  # ... that fit below n
        taken[j] = min(taken[j], n - 1 - i)
    position = np.empty(n, np.int64)
    position[named] = taken
    free = np.setdiff1d(np.arange(n), taken)
    others = [k for k, c in enumerate(classes) if not c.lvis_id]
    position[others] = rng.permutation(free)
    return position


def image_count_plan(classes, num_train_images, classes_per_image, rng):
    """
    Training image counts of ``classes`` (icons with ``lvis_id``, 0 for none) and their groups:
    LVIS's counts at evenly spaced ranks mapped by ``n -> n ** a``, with the exponent a for
    which the training images hold ``classes_per_image`` classes on average.

    Returns:
        dict: ``counts`` (int array, one per class), ``lvis_counts`` (the LVIS count each
        class's count is mapped from), ``frequency`` (list of "r"/"c"/"f"),
        ``exponent`` a, ``rare_max`` and ``common_max`` (LVIS's thresholds mapped by the power).
    """
    lvis = lvis_v1_image_counts()
    n = len(classes)
    ranked = np.sort(lvis)[::-1]
    targets = ranked[np.minimum(len(lvis) - 1, ((np.arange(n) + 0.5) * len(lvis) / n).astype(int))]
    lvis_counts = targets[_rank_positions(classes, lvis, rng)]
    pairs = classes_per_image * num_train_images
    lo, hi = 0.05, 2.0  # the pairs grow with a: bisect
    if pairs > n * num_train_images or _mapped(lvis_counts, hi, num_train_images)[0].sum() < pairs:
        raise ValueError(f"{n} classes cannot fill {num_train_images} training images with "
                         f"{classes_per_image} classes each: fewer images or classes per image")
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mapped(lvis_counts, mid, num_train_images)[0].sum() < pairs \
            else (lo, mid)
    a = hi
    counts, rare_max, common_max = _mapped(lvis_counts, a, num_train_images)
    if not 1 <= rare_max < common_max < counts.max():
        raise ValueError(f"{num_train_images} training images with {classes_per_image} classes "
                         f"each do not separate LVIS's groups: rare up to {rare_max} images, "
                         f"common up to {common_max}, the head {counts.max()}")
    bands = [_band(int(c)) for c in lvis_counts]
    return {"counts": counts, "lvis_counts": lvis_counts,
            "frequency": ["rcf"[b] for b in bands], "exponent": float(a),
            "rare_max": int(rare_max), "common_max": int(common_max)}


def classes_digest(classes):
    """A digest of the classes (icon, name, LVIS id): a cached folder made from another catalog
    (e.g. before a match was added to the table) is not up to date."""
    text = "\n".join(f"{c.hexcode} {c.name} {c.lvis_id}" for c in classes)
    return hashlib.sha1(text.encode()).hexdigest()


def _deal(rng, occurrences, num_images):
    """
    Deal each class's ``occurrences`` (images it appears in) to distinct images of random
    capacity. Returns per image the list of class indices; every image gets at least one.
    """
    capacity = rng.gamma(2.0, 1.0, size=num_images) + 0.05
    load = np.zeros(num_images, np.int64)
    images = [[] for _ in range(num_images)]
    for k in np.argsort(-occurrences, kind="stable"):
        m = int(occurrences[k])
        if m > num_images:
            raise ValueError(f"a class needs {m} images, more than the {num_images} images")
        open_ = load < MAX_CLASSES_PER_IMAGE
        w = np.where(open_, capacity / (1.0 + load) ** 2, 0.0)
        if (w > 0).sum() < m:
            raise ValueError(f"{num_images} images cannot hold {int(occurrences.sum())} "
                             f"(image, class) pairs at {MAX_CLASSES_PER_IMAGE} classes an image")
        for i in rng.choice(num_images, size=m, replace=False, p=w / w.sum()):
            images[i].append(int(k))
            load[i] += 1
    empty = np.flatnonzero(load == 0)  # an empty image takes a frequent class (by occurrences)
    head = np.where(occurrences >= np.quantile(occurrences, 0.9), occurrences, 0)
    for i, k in zip(empty, rng.choice(len(occurrences), size=len(empty), p=head / head.sum())):
        images[i].append(int(k))
    return images


def _balanced(rng, num_classes, num_images):
    """Val / test: every class in the same number of images (as many as the images allow at
    about :data:`_EVAL_CLASSES_PER_IMAGE` classes each), classes dealt round-robin."""
    per_class = min(num_images, max(1, round(num_images * _EVAL_CLASSES_PER_IMAGE / num_classes)))
    pool = np.concatenate([rng.permutation(num_classes) for _ in range(per_class)])
    images = [[] for _ in range(num_images)]
    for j, k in enumerate(pool):
        i = j % num_images
        while int(k) in images[i]:  # a class once an image
            i = (i + 1) % num_images
        images[i].append(int(k))
    return images


_EVAL_CLASSES_PER_IMAGE = 5


def _rle(mask):
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _draw_split(rng, split, image_ids, assignment, classes, size, out_dir, duplicate):
    """Draw one split; returns (images, annotations) exhaustively annotated."""
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    lo, hi = np.log(SIZE_RANGE[0] * size), np.log(SIZE_RANGE[1] * size)
    images, annotations = [], []
    num_classes = len(classes)
    for image_id, present in zip(image_ids, assignment):
        objects, required = [], []
        for k in present:
            objects.append(k)
            required.append(True)
            copies = 1
            while duplicate and copies < MAX_COPIES and rng.random() < DUPLICATE_PROB:
                objects.append(k)
                required.append(False)
                copies += 1
        order = rng.permutation(len(objects))
        objects = [objects[i] for i in order]
        required = [required[i] for i in order]
        insts = [icon_render.instance_rgba(rng, icon_render.icon_rgba(svg_path(classes[k].hexcode)),
                                           float(np.exp(rng.uniform(lo, hi))))
                 for k in objects]
        img = icon_render.background(rng, size, size)
        masks = icon_render.compose(rng, img, insts, required)
        file = f"{image_id:012d}.png"
        cv2.imwrite(os.path.join(out_dir, split, file), img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        labelled = set()
        for k, mask in zip(objects, masks):
            if mask is None:
                continue
            area = int(mask.sum())
            if area < 4:  # hidden by later objects: too little left to be an object
                continue
            ys, xs = np.nonzero(mask)
            annotations.append({
                "id": 0, "image_id": image_id, "category_id": k + 1,
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                         float(ys.max() - ys.min() + 1)],
                "area": float(area), "segmentation": _rle(mask),
            })
            labelled.add(k + 1)
        url = _URL.format(split=split, file=file)
        images.append({
            "id": image_id, "width": size, "height": size, "license": 1, "coco_url": url,
            "flickr_url": url, "date_captured": "2021-01-01 00:00:00",
            "not_exhaustive_category_ids": [],
            "neg_category_ids": [c for c in range(1, num_classes + 1) if c not in labelled],
        })
    return images, annotations


def _category(cat_id, icon, lvis, plan, k, counts):
    n = int(counts[0][k])
    frequency = "r" if n <= plan["rare_max"] else ("c" if n <= plan["common_max"] else "f")
    src = lvis.get(icon.lvis_id)
    return {
        "id": cat_id,
        "name": icon.name,
        "synonyms": list(src["synonyms"]) if src else list(icon.synonyms) or [icon.name],
        "synset": src["synset"] if src else f"openmoji.{icon.hexcode.lower()}",
        "def": src["def"] if src else f"the OpenMoji icon {icon.hexcode} ({icon.name})",
        "supercategory": icon.kind,
        "frequency": frequency,  # LVIS's rule with the mapped thresholds, on the labelled images
        "image_count": int(counts[0][k]),
        "instance_count": int(counts[1][k]),
        "openmoji": icon.hexcode,
        "lvis_id": int(icon.lvis_id),
    }


def _train_counts(annotations, num_classes):
    images = [set() for _ in range(num_classes)]
    instances = np.zeros(num_classes, np.int64)
    for a in annotations:
        images[a["category_id"] - 1].add(a["image_id"])
        instances[a["category_id"] - 1] += 1
    return np.array([len(s) for s in images]), instances


def generate_icon_lvis(out_dir, *, seed=0, num_classes=1203, num_train_images=6000,
                       num_val_images=800, num_test_images=1600, image_size=192,
                       classes_per_image=5.0, federated=True):
    """
    Write the icon world's three splits into ``out_dir`` (created; its previous content under
    the split names is replaced). Returns the parameters written to ``meta.json``.
    """
    from . import federated as federation

    params = {"seed": int(seed), "num_classes": int(num_classes),
              "num_train_images": int(num_train_images), "num_val_images": int(num_val_images),
              "num_test_images": int(num_test_images), "image_size": int(image_size),
              "classes_per_image": float(classes_per_image), "federated": bool(federated)}
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64 px, got {image_size}")
    for key in ("num_val_images", "num_test_images"):
        if params[key] < 1:
            raise ValueError(f"{key} must be positive, got {params[key]}")
    classes = select_classes(num_classes)
    rng = np.random.default_rng(seed)
    plan = image_count_plan(classes, num_train_images, classes_per_image, rng)
    occurrences = plan["counts"].copy()
    unchecked_extra = np.zeros(num_classes, np.int64)
    if federated:  # never-checked images on top of the labelled ones (their objects unlabelled)
        p = federation.UNCHECKED_PROB
        unchecked_extra = np.minimum(np.floor(occurrences * p / (1 - p) + 0.5).astype(np.int64),
                                     num_train_images - occurrences)
        occurrences = occurrences + unchecked_extra
    assignment = _deal(rng, occurrences, num_train_images)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    train_ids = list(range(1, num_train_images + 1))
    val_ids = list(range(num_train_images + 1, num_train_images + num_val_images + 1))
    test_ids = list(range(val_ids[-1] + 1, val_ids[-1] + num_test_images + 1))
    unchecked = set()
    if federated:  # per class, its first `unchecked_extra` images (in dealing order) unchecked
        left = unchecked_extra.copy()
        for image_id, present in zip(train_ids, assignment):
            for k in present:
                if left[k] > 0 and len(present) > 1:
                    unchecked.add((image_id, k + 1))
                    left[k] -= 1
    splits = {}  # annotation ids are numbered across the splits before federation drops some
    splits["train"] = _draw_split(rng, "train", train_ids, assignment, classes, image_size,
                                  out_dir, duplicate=True)
    splits["val"] = _draw_split(rng, "val", val_ids, _balanced(rng, num_classes, num_val_images),
                                classes, image_size, out_dir, duplicate=True)
    test_rng = np.random.default_rng([seed, TEST_STREAM])
    splits["test"] = _draw_split(test_rng, "test", test_ids,
                                 _balanced(test_rng, num_classes, num_test_images), classes,
                                 image_size, out_dir, duplicate=True)
    next_id = 1
    for split in SPLITS:
        for a in splits[split][1]:
            a["id"] = next_id
            next_id += 1
    if federated:
        neg_prob = min(1.0, NEGATIVES_PER_IMAGE / num_classes)
        fed_rng = np.random.default_rng([seed, 3])
        for split in SPLITS:
            images, anns = splits[split]
            splits[split] = federation.federate(
                fed_rng, images, anns, num_classes=num_classes, neg_sample_prob=neg_prob,
                unchecked=unchecked if split == "train" else None)
    counts = _train_counts(splits["train"][1], num_classes)
    missing = [classes[k].name for k in np.flatnonzero(counts[0] == 0)]
    if missing:
        raise RuntimeError(f"classes without a labelled training image: {missing[:5]}")
    lvis = _lvis_categories()
    categories = [_category(k + 1, c, lvis, plan, k, counts) for k, c in enumerate(classes)]
    for split in SPLITS:
        images, anns = splits[split]
        with open(os.path.join(out_dir, SPLIT_JSON[split]), "w") as f:
            json.dump({"info": {"description": f"icon world ({GENERATOR_NAME}), {split}"},
                       "licenses": [{"id": 1, "name": "CC BY-SA 4.0 (OpenMoji icons)"}],
                       "categories": categories, "images": images, "annotations": anns}, f)
    logger.info("icon world: %d classes, %d/%d/%d images drawn in %.0f s into %s", num_classes,
                num_train_images, num_val_images, num_test_images, time.perf_counter() - t0,
                out_dir)
    meta = {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "params": params,
            "classes_digest": classes_digest(classes),
            "exponent": plan["exponent"], "rare_max": plan["rare_max"],
            "common_max": plan["common_max"]}
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)
    return params


def get_icon_root(setting="icons_1203"):
    """The cache folder of a setting: ``$LDA_ICONS_ROOT`` (default
    ``~/.cache/projects_lda/icons``) with ``_<setting>`` appended."""
    base = os.environ.get(ROOT_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "projects_lda", "icons")
    return f"{base}_{setting}"


def _read_meta(root):
    """The ``meta.json`` of ``root`` if this module wrote it, else None."""
    return read_meta(root, META_FILE, GENERATOR_NAME)


def _up_to_date(meta, params):
    return meta is not None and meta.get("version") == GENERATOR_VERSION and \
        meta.get("params") == params and \
        meta.get("classes_digest") == classes_digest(select_classes(params["num_classes"]))


def ensure_icon_lvis(root, **params):
    """
    The icon world with ``params`` (defaults :data:`ICON_DEFAULTS`) in ``root``, generated first
    unless ``root`` already holds it; returns ``root``. A folder this generator wrote with other
    parameters or another version is regenerated (replaced by a rename); any other non-empty
    folder is never touched (an error asks to delete it). Safe when several processes call it
    at once: each generates into a temporary folder next to ``root`` and renames it into place;
    a process that loses the race uses the winner's folder.
    """
    unknown = sorted(set(params) - set(ICON_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown icon world parameters {unknown}; known: {sorted(ICON_DEFAULTS)}")
    params = {k: type(v)(params.get(k, v)) for k, v in ICON_DEFAULTS.items()}
    root = os.path.abspath(os.path.expanduser(root))
    foreign = (f"{root} exists but is not an icon world folder (no {META_FILE} written by "
               f"{GENERATOR_NAME}); delete it or point ${ROOT_ENV} to another folder")
    meta = _read_meta(root)
    if _up_to_date(meta, params):
        return root
    if meta is None and os.path.isdir(root) and os.listdir(root):
        raise RuntimeError(foreign)
    logger.info("Generating the icon world %s into %s ...", params, root)
    generate_into_place(root, lambda tmp: generate_icon_lvis(tmp, **params),
                        lambda: (m := _read_meta(root)) is not None and not _up_to_date(m, params))
    meta = _read_meta(root)
    if meta is None:
        raise RuntimeError(foreign)
    if not _up_to_date(meta, params):
        raise RuntimeError(f"{root} was regenerated meanwhile by another process with other "
                           f"parameters ({meta.get('params')}); use separate folders")
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--setting", choices=sorted(SETTINGS),
                        help="start from a benchmark setting's parameters")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--num-train-images", type=int)
    parser.add_argument("--num-val-images", type=int)
    parser.add_argument("--num-test-images", type=int)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--classes-per-image", type=float)
    parser.add_argument("--federated", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)
    params = dict(SETTINGS[args.setting] if args.setting else ICON_DEFAULTS)
    for key in params:
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    generate_icon_lvis(args.out, **params)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s: {params}")


if __name__ == "__main__":
    main()
