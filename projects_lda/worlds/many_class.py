"""
The many-class variant of the embedded dataset: 100 to 2,000 classes (:data:`MANY_CLASS_MIN`
to :data:`MANY_CLASS_MAX`) in LVIS v1's rare / common / frequent shape, for methods whose
behaviour depends on the size of the vocabulary (1,203 classes by default, as in LVIS v1).

:func:`projects_lda.worlds.embedded.generate_embedded_lvis` dispatches here from
:data:`MANY_CLASS_MIN` classes on (31-99 classes are refused; up to 30 classes the small
variant's files are unchanged); the folder layout, the LVIS v1 format, ``meta.json`` and the
cache are :mod:`.embedded`'s. Parameters and defaults shared with the small variant:
:mod:`.embedded_common`; drawing: :func:`projects_lda.worlds.render.render_many_split`.

* **Classes are attribute combinations** (:func:`many_class_table`, the same for every seed):
  shape (15, :data:`~projects_lda.worlds.render.MANY_SHAPES`), hue (8), shade (3), texture (3)
  and aspect (3), in sibling groups of 3 that share all attributes but one (the group's cue:
  shade, texture, aspect, neighbouring hues or look-alike shapes, in turn). Every class is a
  distinct combination; the table of N classes is the first N of the 2,000-class table.
* **LVIS v1's shape.** Rare / common / frequent counts in LVIS v1's proportions (337 : 461 : 405,
  :func:`many_class_frequency_counts`), by LVIS's rule on *labelled training images*
  (:func:`many_class_image_counts`): frequent classes a power law from 400 down to 101 images,
  common ones geometric from 100 to 11, rare ones from 10 to 1. Frequency ranks are dealt by
  tiers as in the small variant (:func:`~projects_lda.worlds.embedded_common.rank_order`), so
  every group has a frequent head and every rare class a frequent sibling. The most frequent
  class has about 130x the instances of the median rare one.
* **Scenes.** About 8 classes (12 at most) and 11 instances (20 at most; a class has 1-3
  instances) per training image, one object per cell of a random guillotine partition of the
  image, so objects never overlap and none is dropped: the planned image counts are exact.
* **Balanced val / test**: 10 / 20 instances of every class (exhaustive; before federation),
  about 7.5 classes per image. ``federated=True`` annotates every split as :mod:`.federated`
  does, with about 6 verified negatives per image (not 15% of 1,200 absent categories); the
  training split's never-checked (image, class) pairs are drawn on top of the planned labelled
  images, so LVIS's proportions hold on the labelled counts.
* **Sizes.** Image counts and size left unset take :func:`many_class_defaults` (mean 8 classes
  per image, 160 px: 9,100 / 1,600 / 3,100 images at 1,203 classes); too few images raise a
  ValueError naming the parameter and the minimum (:func:`many_class_minimums`). ``imbalance``
  is not used (the bands fix the shape).

The benchmark's variant at 300 classes is ``VARIANTS["many_class"]`` /
``VARIANTS["many_class_federated"]`` of :mod:`.embedded`, registered as ``lvis_embedded_many_*`` /
``lvis_embedded_many_fed_*``, the one at 1,203 classes ``VARIANTS["many_class_1203"]``, registered
as ``lvis_embedded_many1203_*`` (:mod:`projects_lda.data`); ``docs/datasets.md`` has the
measurements and the configs.
"""
import functools
import itertools
import logging
import math
import os
from typing import NamedTuple

import numpy as np

from . import federated as federation
from .embedded_common import (EMBEDDED_DEFAULTS, SPLITS, TEST_STREAM, rank_order,
                               train_categories)
from ..data.frequency_groups import COMMON_MAX_IMAGES, RARE_MAX_IMAGES
from .render import MANY_SHAPES, render_many_split

__all__ = [
    "LVIS_V1_FREQUENCY_COUNTS",
    "MANY_CLASS_MAX",
    "MANY_CLASS_MIN",
    "ManyClass",
    "check_many_class",
    "many_class_defaults",
    "many_class_frequency_counts",
    "many_class_image_counts",
    "many_class_minimums",
    "many_class_splits",
    "many_class_table",
]

logger = logging.getLogger(__name__)

MANY_CLASS_MIN = 100  # from this many classes on, the many-class variant (LVIS v1's shape)
MANY_CLASS_MAX = 2000  # classes (disjoint sibling groups of the 3,240 attribute combinations)
LVIS_V1_FREQUENCY_COUNTS = {"r": 337, "c": 461, "f": 405}  # LVIS v1's 1,203 categories
# Attributes of the classes (shapes: render.MANY_SHAPES): 8 hues 45 degrees apart (OpenCV hue,
# 0-179), 3 shades, 3 textures and 3 aspect ratios: 15 x 8 x 27 = 3,240 combinations.
_MANY_HUES = (("red", 0), ("orange", 22), ("lime", 45), ("green", 67), ("cyan", 90),
              ("blue", 112), ("purple", 135), ("pink", 157))  # fmt: skip
_MANY_ATTRIBUTES = {
    "shape": MANY_SHAPES,
    "hue": tuple(name for name, _ in _MANY_HUES),
    "shade": ("light", "medium", "dark"),
    "texture": ("solid", "striped", "dotted"),
    "aspect": ("regular", "stretched", "elongated"),
}
# Look-alike shapes, the members of a group whose cue is the shape.
_SHAPE_FAMILIES = (
    ("disc", "hexagon", "pentagon"),
    ("triangle", "chevron", "arrow"),
    ("cross", "tee", "star"),
    ("ring", "crescent", "semicircle"),
)
_MANY_CUES = ("shade", "texture", "aspect", "hue", "shape")  # taken in turn by the groups
_MANY_TABLE_SEED = 1203  # the class table is the same for every dataset seed
_MANY_HEAD_IMAGES = 400  # training images of the most frequent class
_MANY_MAX_CLASSES = 12  # distinct classes per training / evaluation image, at most
_MANY_MEAN_CLASSES = 8  # ... on average at the default image counts
_MANY_DUPLICATE_PROB = 0.3  # another instance of a class of an image: geometric, ...
_MANY_MAX_COPIES = 3  # ... up to 3 instances of a class in an image
_MANY_MAX_INSTANCES = 20  # instances per image, at most
_MANY_VAL_PER_CLASS = 10  # val and test: instances of every class (before federation)
_MANY_TEST_PER_CLASS = 20
_MANY_IMAGE_SIZE = 160  # proposed; the classes are told apart from about 160 px (docs/datasets.md)
_MANY_MIN_IMAGE_SIZE = 96  # below, the smallest objects of a crowded image can vanish
_MANY_NEGATIVES_PER_IMAGE = 6.0  # federated: verified-absent categories per image (expected)


class ManyClass(NamedTuple):
    """A class of the many-class variant: its sibling group, attributes and the group's cue
    (the one attribute its siblings do not share)."""

    group: int
    shape: str
    hue: str
    shade: str
    texture: str
    aspect: str
    cue: str

    @property
    def name(self):
        return f"{self.hue}_{self.shade}_{self.texture}_{self.aspect}_{self.shape}"


@functools.lru_cache(maxsize=1)
def _many_groups():
    """
    The sibling groups of the many-class variant, in a fixed order: each is 3 attribute
    combinations that differ in one attribute (the cue) and share the 4 others. Candidate
    groups of each cue are shuffled with a fixed seed; groups take the cues in turn, each the
    next candidate that shares no combination with earlier groups, so every class is a distinct
    combination and the first ``N / 3`` groups are spread over shapes and hues.
    """
    rng = np.random.default_rng(_MANY_TABLE_SEED)
    names = list(_MANY_ATTRIBUTES)
    sizes = {k: len(v) for k, v in _MANY_ATTRIBUTES.items()}
    families = [tuple(MANY_SHAPES.index(s) for s in f) for f in _SHAPE_FAMILIES]
    candidates = {}
    for cue in _MANY_CUES:
        others = [k for k in names if k != cue]
        if cue == "shape":
            lines = families
        elif cue == "hue":  # three neighbouring hues
            lines = [tuple((h + i) % sizes["hue"] for i in range(3)) for h in range(sizes["hue"])]
        else:
            lines = [tuple(range(sizes[cue]))]
        groups = []
        for line in lines:
            for rest in itertools.product(*(range(sizes[k]) for k in others)):
                fixed = dict(zip(others, rest))
                groups.append(tuple(tuple({**fixed, cue: v}[k] for k in names) for v in line))
        candidates[cue] = [groups[i] for i in rng.permutation(len(groups))]
    used, out, next_candidate = set(), [], dict.fromkeys(_MANY_CUES, 0)
    while 3 * len(out) < MANY_CLASS_MAX:
        cue = _MANY_CUES[len(out) % len(_MANY_CUES)]
        lst, i = candidates[cue], next_candidate[cue]
        while used.intersection(lst[i]):
            i += 1
        next_candidate[cue] = i + 1
        used.update(lst[i])
        out.append((cue, lst[i]))
    return out


def many_class_table(num_classes):
    """
    The first ``num_classes`` classes of the many-class variant (:class:`ManyClass`), ordered
    by category id: group by group, 3 siblings each (the last group may be smaller).
    """
    if not MANY_CLASS_MIN <= num_classes <= MANY_CLASS_MAX:
        raise ValueError(
            f"num_classes must be in [{MANY_CLASS_MIN}, {MANY_CLASS_MAX}], got {num_classes}"
        )
    table = []
    for g, (cue, members) in enumerate(_many_groups()):
        for combo in members:
            if len(table) < num_classes:
                attrs = {k: _MANY_ATTRIBUTES[k][v] for k, v in zip(_MANY_ATTRIBUTES, combo)}
                table.append(ManyClass(group=g, cue=cue, **attrs))
    return table


def many_class_frequency_counts(num_classes):
    """Rare / common / frequent category counts in LVIS v1's proportions (337 : 461 : 405)."""
    total = sum(LVIS_V1_FREQUENCY_COUNTS.values())
    rare = round(num_classes * LVIS_V1_FREQUENCY_COUNTS["r"] / total)
    frequent = round(num_classes * LVIS_V1_FREQUENCY_COUNTS["f"] / total)
    return {"r": rare, "c": num_classes - rare - frequent, "f": frequent}


def many_class_image_counts(num_classes):
    """
    Labelled training images of the class of each frequency rank (most frequent first), in
    LVIS's bands: the ``f`` frequent classes a power law from :data:`_MANY_HEAD_IMAGES` down
    to 101 images; the common ones geometric from 100 down to 11; the rare ones geometric from
    10 down to 1. So LVIS's rule on them gives exactly :func:`many_class_frequency_counts`.
    """
    bands = many_class_frequency_counts(num_classes)

    def geometric(n, hi, lo):
        return hi * (lo / hi) ** (np.arange(n) / max(1, n - 1))

    ranks = np.arange(1, bands["f"] + 1)
    power = math.log(_MANY_HEAD_IMAGES / (COMMON_MAX_IMAGES + 1)) / math.log(max(2, bands["f"]))
    counts = [
        np.clip(_MANY_HEAD_IMAGES * ranks**-power, COMMON_MAX_IMAGES + 1, _MANY_HEAD_IMAGES),
        np.clip(geometric(bands["c"], COMMON_MAX_IMAGES, RARE_MAX_IMAGES + 1),
                RARE_MAX_IMAGES + 1, COMMON_MAX_IMAGES),
        np.clip(geometric(bands["r"], RARE_MAX_IMAGES, 1), 1, RARE_MAX_IMAGES),
    ]  # fmt: skip
    return np.floor(np.concatenate(counts) + 0.5).astype(int)


def _unchecked_images(labelled):
    """Federated: images of a class never checked for it (its objects there stay unlabelled),
    on top of its ``labelled`` images, so that ``UNCHECKED_PROB`` of its images are unchecked."""
    p = federation.UNCHECKED_PROB
    return int(math.floor(labelled * p / (1 - p) + 0.5))


def _many_train_occurrences(num_classes, federated):
    counts = many_class_image_counts(num_classes)
    if federated:
        counts = counts + np.array([_unchecked_images(int(n)) for n in counts])
    return counts


def _round_up(n, step=100):
    return int(math.ceil(n / step) * step)


def many_class_defaults(num_classes, federated=False):
    """
    The proposed parameters of the many-class variant: :data:`_MANY_MEAN_CLASSES` classes per
    image on average (about 11 instances), val and test images for
    :data:`_MANY_VAL_PER_CLASS` / :data:`_MANY_TEST_PER_CLASS` instances of every class, image
    counts rounded up to hundreds, 160 px images.
    """
    occurrences = int(_many_train_occurrences(num_classes, federated).sum())
    per_image = _MANY_MEAN_CLASSES
    return {
        **EMBEDDED_DEFAULTS,
        "num_classes": int(num_classes),
        "num_train_images": _round_up(occurrences / per_image),
        "num_val_images": _round_up(num_classes * _MANY_VAL_PER_CLASS / per_image),
        "num_test_images": _round_up(num_classes * _MANY_TEST_PER_CLASS / per_image),
        "image_size": _MANY_IMAGE_SIZE,
        "federated": bool(federated),
    }


def many_class_minimums(num_classes, federated=False):
    """The fewest train / val / test images that hold the many-class variant's instances
    (at most :data:`_MANY_MAX_CLASSES` classes an image)."""
    occurrences = _many_train_occurrences(num_classes, federated)
    return {
        "num_train_images": max(int(occurrences.max()),
                                math.ceil(occurrences.sum() / _MANY_MAX_CLASSES)),
        "num_val_images": math.ceil(num_classes * _MANY_VAL_PER_CLASS / _MANY_MAX_CLASSES),
        "num_test_images": math.ceil(num_classes * _MANY_TEST_PER_CLASS / _MANY_MAX_CLASSES),
    }  # fmt: skip


def check_many_class(params):
    """Raise ValueError, naming the parameter, if the complete generation ``params`` (those of
    ``meta.json``) cannot hold the many-class variant of their class count."""
    n = params["num_classes"]
    if params["image_size"] < _MANY_MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be at least {_MANY_MIN_IMAGE_SIZE} pixels for the many-class "
            f"variant (up to {_MANY_MAX_INSTANCES} objects an image), got {params['image_size']}"
        )
    proposed = many_class_defaults(n, params["federated"])
    for key, least in many_class_minimums(n, params["federated"]).items():
        if params[key] < least:
            raise ValueError(
                f"{key}={params[key]} is too few for num_classes={n} in LVIS v1's shape "
                f"(r/c/f {'/'.join(str(v) for v in many_class_frequency_counts(n).values())}, "
                f"at most {_MANY_MAX_CLASSES} classes an image): it needs at least {least} "
                f"(proposed: {proposed[key]})"
            )


def _assign_many(rng, counts, num_images):
    """
    Choose, for each class c, ``counts[c]`` distinct images. Each image gets a capacity (1 to
    :data:`_MANY_MAX_CLASSES` classes, from 0.5x to 1.5x the mean, summing to the total); the
    largest demands go first into the images with most room left (always feasible when any
    assignment is: Gale-Ryser). Returns a list (per image) of class-index lists.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    mean = total / num_images
    cap = np.clip(np.floor(mean * rng.uniform(0.5, 1.5, num_images) + 0.5), 1, _MANY_MAX_CLASSES)
    cap = cap.astype(np.int64)
    while cap.sum() != total:
        diff = total - int(cap.sum())
        room = np.flatnonzero(cap < _MANY_MAX_CLASSES) if diff > 0 else np.flatnonzero(cap > 1)
        pick = rng.choice(room, min(abs(diff), len(room)), replace=False)
        cap[pick] += 1 if diff > 0 else -1
    images = [[] for _ in range(num_images)]
    for c in np.argsort(-counts, kind="stable"):
        key = cap + rng.random(num_images) * 0.5
        chosen = np.argsort(-key, kind="stable")[: counts[c]]
        if (cap[chosen] <= 0).any():
            raise ValueError("the classes do not fit in the images; use more images")
        cap[chosen] -= 1
        for i in chosen:
            images[i].append(int(c))
    return [[lst[j] for j in rng.permutation(len(lst))] for lst in images]


def _many_categories(table, train_annotations):
    """LVIS categories of the many-class variant, with the training counts."""
    return train_categories(
        [(row.name, f"a synthetic {row.shape}: {row.hue}, {row.shade}, {row.texture}, "
          f"{row.aspect} (its siblings differ in {row.cue})", str(row.group)) for row in table],
        train_annotations)


def many_class_splits(out_dir, params):
    """
    Draw the images of the many-class variant into ``out_dir/<split>/`` for the complete
    generation ``params`` (checked by :func:`check_many_class`) and return ``(split,
    categories)``: per split ``(images, annotations)`` in LVIS v1 format, and the categories
    with the training counts (the caller writes the JSON files and ``meta.json``). Random
    streams: ``seed`` for the frequency ranks, the train and val assignments and images and the
    federation; ``(seed, TEST_STREAM)`` for the test split.
    """
    n = params["num_classes"]
    federated = params["federated"]
    if params["imbalance"] != EMBEDDED_DEFAULTS["imbalance"]:
        logger.warning("imbalance is not used by the many-class variant (LVIS v1's bands are)")
    sizes = [params[f"num_{s}_images"] for s in SPLITS]
    rng = np.random.default_rng(params["seed"])
    table = many_class_table(n)
    order = rank_order(rng, table)
    labelled = [0] * n
    for rank, count in enumerate(many_class_image_counts(n)):
        labelled[order[rank]] = int(count)
    unchecked = [_unchecked_images(k) if federated else 0 for k in labelled]
    train_assign = _assign_many(rng, [a + b for a, b in zip(labelled, unchecked)], sizes[0])
    val_assign = _assign_many(rng, [_MANY_VAL_PER_CLASS] * n, sizes[1])

    os.makedirs(out_dir, exist_ok=True)
    ids = np.cumsum([1, *sizes])
    split_ids = {s: list(range(ids[i], ids[i + 1])) for i, s in enumerate(SPLITS)}
    hue = dict(_MANY_HUES)
    styles = [(r.shape, hue[r.hue], r.shade, r.texture, r.aspect) for r in table]
    args = (styles, params["image_size"], out_dir)
    dup = {"duplicate_prob": _MANY_DUPLICATE_PROB, "max_copies": _MANY_MAX_COPIES,
           "max_instances": _MANY_MAX_INSTANCES}  # fmt: skip
    eval_dup = dup if federated else {}  # exhaustive val / test: one instance per class
    split = {}
    split["train"] = render_many_split(rng, "train", split_ids["train"], 1, train_assign, *args,
                                       **dup)  # fmt: skip
    next_id = len(split["train"][1]) + 1
    split["val"] = render_many_split(rng, "val", split_ids["val"], next_id, val_assign, *args,
                                     **eval_dup)  # fmt: skip
    test_rng = np.random.default_rng([params["seed"], TEST_STREAM])
    test_assign = _assign_many(test_rng, [_MANY_TEST_PER_CLASS] * n, sizes[2])
    next_id += len(split["val"][1])
    split["test"] = render_many_split(test_rng, "test", split_ids["test"], next_id, test_assign,
                                      *args, **eval_dup)  # fmt: skip
    if federated:
        # Training: the unchecked (image, class) pairs are drawn here, so that every class keeps
        # exactly its planned number of labelled images (and LVIS's r/c/f counts).
        images_of = [[] for _ in range(n)]
        for image_id, classes in zip(split_ids["train"], train_assign):
            for c in classes:
                images_of[c].append(image_id)
        skip = set()
        for c in range(n):
            for j in rng.choice(len(images_of[c]), unchecked[c], replace=False):
                skip.add((images_of[c][j], c + 1))
        neg = min(federation.NEG_SAMPLE_PROB, _MANY_NEGATIVES_PER_IMAGE / n)
        for s in SPLITS:
            split[s] = federation.federate(rng, *split[s], num_classes=n, neg_sample_prob=neg,
                                           unchecked=skip if s == "train" else None)  # fmt: skip
    return split, _many_categories(table, split["train"][1])

