"""
An LVIS v1-shaped dataset, generated on demand: LVIS v1's field names, its 1,203 categories
(names, synsets and the 337 / 461 / 405 rare / common / frequent split, from detectron2's
``LVIS_CATEGORIES``), a long-tailed ``image_count`` inside each frequency band, about 12.7
instances per training image, ``neg_category_ids`` and ``not_exhaustive_category_ids`` on every
image, and polygon masks. It exists to rehearse the LVIS v1 configs at their real size and shape
(number of records, instances and classes) where the real data cannot be had; its images carry
no information about its labels, so nothing trained on it means anything.

Images are a small pool of real 640x480 JPEG files (``train2017/`` and ``val2017/`` under the
root) shared by all records, so the disk stays small at any size.

Sizes (``SIZES``): ``"100k"`` has LVIS v1's 100,170 training images (~1.27M instances) and 19,809
validation images (~245k instances); ``"30k"``, ``"10k"``, ``"1k"`` and ``"tiny"`` scale both
splits down (every category keeps at least one training image). Generation is vectorised with
numpy and streams the JSON out in chunks: nothing is held as images x classes.
"""
import json
import os

import numpy as np

from ..data.datasets import register_lvis_format

__all__ = [
    "SIZES",
    "TRAIN_IMAGES",
    "generate_lvis_shaped",
    "lvis_shaped_category_counts",
    "register_lvis_shaped",
    "extra_datasets_spec",
]

TRAIN_IMAGES = 100170  # LVIS v1 train
VAL_IMAGES = 19809  # LVIS v1 val
TRAIN_INSTANCES = 1270141  # LVIS v1 train annotations
VAL_INSTANCES = 244707  # LVIS v1 val annotations
SIZES = {"tiny": 48, "1k": 1000, "10k": 10000, "30k": 30000, "100k": TRAIN_IMAGES}
IMAGE_W, IMAGE_H = 640, 480
POLYGON_POINTS = 12
_FORMAT_VERSION = 1  # bump when the generated content changes


def lvis_shaped_category_counts(seed: int = 0):
    """
    Returns ``(categories, image_count)``: detectron2's LVIS v1 category list (sorted by id) and a
    long-tailed full-size (100,170-image) ``image_count`` per category that respects the LVIS
    frequency bands: rare 1-10, common 11-100, frequent 101-25,000 images (a power law over the
    frequent classes; the counts sum to about 5 classes per training image).
    """
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    cats = sorted(LVIS_CATEGORIES, key=lambda c: c["id"])
    rng = np.random.default_rng(seed)
    freq = np.array([c["frequency"] for c in cats])
    counts = np.zeros(len(cats), dtype=np.int64)
    r, c, f = freq == "r", freq == "c", freq == "f"
    counts[r] = rng.integers(1, 11, size=r.sum())
    counts[c] = np.round(np.exp(rng.uniform(np.log(11), np.log(100.5), size=c.sum())))
    # frequent: quantiles of a power law between 101 and 25,000 images, in random class order
    u = (np.arange(f.sum()) + 0.5) / f.sum()
    counts[f] = rng.permutation(np.round(101 * (25000 / 101) ** (u ** 5.0)))
    return cats, counts


def _make_pool(folder, count, seed):
    """``count`` real 640x480 JPEG files of random coloured shapes (the pool records share)."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        name = f"{i + 1:012d}.jpg"
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            img = np.empty((IMAGE_H, IMAGE_W, 3), np.uint8)
            img[:] = rng.integers(0, 256, size=3)
            for _ in range(12):
                x0, y0 = int(rng.integers(0, IMAGE_W - 40)), int(rng.integers(0, IMAGE_H - 40))
                x1 = x0 + int(rng.integers(20, IMAGE_W - x0))
                y1 = y0 + int(rng.integers(20, IMAGE_H - y0))
                color = tuple(int(v) for v in rng.integers(0, 256, size=3))
                if rng.random() < 0.5:
                    cv2.rectangle(img, (x0, y0), (x1, y1), color, -1)
                else:
                    center, axes = (((x0 + x1) // 2, (y0 + y1) // 2),
                                    ((x1 - x0) // 2, (y1 - y0) // 2))
                    cv2.ellipse(img, center, axes, 0, 0, 360, color, -1)
            tmp = path + ".tmp.jpg"
            if not cv2.imwrite(tmp, img):
                raise OSError(f"could not write {tmp}")
            os.replace(tmp, path)
        names.append(name)
    return names


def _split(rng, num_images, num_instances, image_count_full, full_images, min_one):
    """
    Per-(image, class) pairs and per-annotation arrays of one split. Returns a dict of numpy
    arrays: ``pair_img``, ``pair_cat`` (0-based), annotation ``ann_img``, ``ann_cat``, boxes.
    """
    C = len(image_count_full)
    m = np.round(image_count_full * (num_images / full_images)).astype(np.int64)
    if min_one:
        m = np.maximum(m, 1)
    m = np.minimum(m, num_images)
    cat = np.repeat(np.arange(C), m)
    img = rng.integers(0, num_images, size=cat.size)
    codes = np.unique(img * C + cat)  # drop duplicate (image, class) draws; sorted by image
    pair_img, pair_cat = codes // C, codes % C
    # every image gets at least one instance: images no class drew get a frequent class
    empty = np.setdiff1d(np.arange(num_images), pair_img)
    if empty.size:
        top = np.argsort(-image_count_full)[:20]
        extra = empty * C + rng.choice(top, size=empty.size)
        codes = np.unique(np.concatenate([codes, extra]))
        pair_img, pair_cat = codes // C, codes % C
    # instances per pair: 1 + Poisson, with a per-class mean so totals match LVIS
    lam = max(num_instances / pair_img.size - 1.0, 0.0)
    scale = rng.gamma(2.0, 0.5, size=C)[pair_cat]
    per_pair = 1 + rng.poisson(lam * scale / scale.mean())
    ann_img = np.repeat(pair_img, per_pair)
    ann_cat = np.repeat(pair_cat, per_pair)
    n = ann_img.size
    # boxes: log-uniform area fraction, aspect ratio 1/3..3, inside the 640x480 image
    area = np.exp(rng.uniform(np.log(16 * 16), np.log(0.6 * IMAGE_W * IMAGE_H), size=n))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), size=n))
    w = np.minimum(np.sqrt(area * aspect), IMAGE_W - 2.0)
    h = np.minimum(np.sqrt(area / aspect), IMAGE_H - 2.0)
    x = rng.uniform(0, IMAGE_W - 1 - w)
    y = rng.uniform(0, IMAGE_H - 1 - h)
    return {
        "pair_img": pair_img, "pair_cat": pair_cat,
        "ann_img": ann_img, "ann_cat": ann_cat,
        "x": x, "y": y, "w": w, "h": h,
    }


def _per_image_lists(num_images, img, cat):
    """Split class ids (0-based, sorted by image) into one sorted LVIS-id list per image."""
    order = np.lexsort((cat, img))
    bounds = np.searchsorted(img[order], np.arange(num_images + 1))
    ids = (cat[order] + 1).tolist()
    return [ids[bounds[i]:bounds[i + 1]] for i in range(num_images)]


def _write_split(path, split, arr, num_images, cats, pool, rng, image_id_offset):
    C = len(cats)
    # neg_category_ids: ~6 classes per image verified absent; not_exhaustive: ~10% of present
    neg_img = np.repeat(np.arange(num_images), rng.poisson(6.0, size=num_images))
    neg_cat = rng.integers(0, C, size=neg_img.size)
    neg_codes = np.unique(neg_img * C + neg_cat)
    present = arr["pair_img"] * C + arr["pair_cat"]
    neg_codes = neg_codes[~np.isin(neg_codes, present)]
    neg = _per_image_lists(num_images, neg_codes // C, neg_codes % C)
    ne = rng.random(present.size) < 0.1
    not_exhaustive = _per_image_lists(num_images, arr["pair_img"][ne], arr["pair_cat"][ne])
    pool_idx = rng.integers(0, len(pool), size=num_images)

    # category image_count / instance_count of this file, as LVIS stores them
    image_count = np.bincount(arr["pair_cat"], minlength=C)
    instance_count = np.bincount(arr["ann_cat"], minlength=C)
    categories = [
        {
            "id": c["id"], "name": c["name"], "synset": c["synset"], "synonyms": c["synonyms"],
            "def": c["def"], "frequency": c["frequency"],
            "image_count": int(image_count[i]), "instance_count": int(instance_count[i]),
        }
        for i, c in enumerate(cats)
    ]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write('{"info": {"description": "LVIS v1-shaped synthetic dataset", "version": "1.0"}, ')
        f.write('"licenses": [{"id": 1, "name": "synthetic", "url": ""}], "categories": ')
        f.write(json.dumps(categories))
        f.write(', "images": [')
        for i in range(num_images):
            image_id = image_id_offset + i + 1
            f.write(
                ("" if i == 0 else ", ")
                + '{"id": %d, "license": 1, "height": %d, "width": %d, '
                '"coco_url": "http://images.cocodataset.org/%s/%s", "flickr_url": "", '
                '"date_captured": "2013-11-14 11:18:45", "neg_category_ids": %s, '
                '"not_exhaustive_category_ids": %s}'
                % (image_id, IMAGE_H, IMAGE_W, split, pool[pool_idx[i]], neg[i], not_exhaustive[i])
            )
        f.write('], "annotations": [')
        # polygons: 12-point ellipses inscribed in the boxes
        theta = np.linspace(0, 2 * np.pi, POLYGON_POINTS, endpoint=False)
        fmt = (
            '{"id": %d, "image_id": %d, "category_id": %d, "bbox": [%.2f, %.2f, %.2f, %.2f], '
            '"area": %.2f, "segmentation": [[' + ", ".join(["%.1f"] * 2 * POLYGON_POINTS) + "]]}"
        )
        n = arr["ann_img"].size
        for start in range(0, n, 100000):
            s = slice(start, min(start + 100000, n))
            x, y, w, h = arr["x"][s], arr["y"][s], arr["w"][s], arr["h"][s]
            px = x[:, None] + w[:, None] * (0.5 + 0.5 * np.cos(theta))
            py = y[:, None] + h[:, None] * (0.5 + 0.5 * np.sin(theta))
            poly = np.stack([px, py], axis=2).reshape(len(x), -1)
            table = np.column_stack(
                [
                    np.arange(s.start, s.stop) + 1,
                    arr["ann_img"][s] + image_id_offset + 1,
                    arr["ann_cat"][s] + 1,
                    x, y, w, h, np.pi / 4 * w * h, poly,
                ]
            )
            rows = [fmt % tuple(r) for r in table.tolist()]
            f.write(("" if start == 0 else ", ") + ", ".join(rows))
        f.write("]}")
    os.replace(tmp, path)
    return {"images": num_images, "annotations": n}


def generate_lvis_shaped(root, size="10k", *, seed=0, pool_size=32, val_size=None, force=False):
    """
    Writes ``lvis_v1_train.json`` and ``lvis_v1_val.json`` (LVIS v1 format) and the image pools
    ``train2017/`` and ``val2017/`` into ``root``; does nothing when ``root`` already holds this
    size and seed (unless ``force``).

    Args:
        root (str): output folder; it is the ``image_root`` of both splits.
        size (str or int): a key of :data:`SIZES` or a number of training images; validation has
            LVIS v1's val/train ratio of images (19,809 / 100,170), at least 8.
        seed (int): random seed (same seed and size: same files).
        pool_size (int): number of distinct training image files (validation: a quarter).
        val_size (int or None): number of validation images instead of the ratio above.
    Returns:
        dict with ``train_json``, ``val_json``, ``image_root`` and the counts written.
    """
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}: expected one of {sorted(SIZES)} or an int")
        num_train = SIZES[size]
    else:
        num_train = int(size)
    if num_train < 1:
        raise ValueError(f"size must be >= 1 training image, got {size!r}")
    if val_size is not None:
        num_val = int(val_size)
    elif num_train == TRAIN_IMAGES:
        num_val = VAL_IMAGES
    else:
        num_val = max(8, round(num_train * VAL_IMAGES / TRAIN_IMAGES))
    if num_val < 1:
        raise ValueError(f"val_size must be >= 1, got {val_size!r}")
    root = os.path.abspath(os.path.expanduser(str(root)))
    os.makedirs(root, exist_ok=True)
    out = {
        "train_json": os.path.join(root, "lvis_v1_train.json"),
        "val_json": os.path.join(root, "lvis_v1_val.json"),
        "image_root": root + "/",
    }
    stamp = os.path.join(root, "lvis_shaped.done")
    spec = {"version": _FORMAT_VERSION, "train": num_train, "val": num_val, "seed": seed,
            "pool": pool_size}
    if not force and os.path.isfile(stamp):
        with open(stamp) as f:
            done = json.load(f)
        if done.get("spec") == spec:
            return dict(out, **done["counts"])
    if os.path.isfile(stamp):
        os.remove(stamp)
    cats, image_count_full = lvis_shaped_category_counts(seed)
    rng = np.random.default_rng(seed + 1)
    train_pool = _make_pool(os.path.join(root, "train2017"), pool_size, seed)
    val_pool = _make_pool(os.path.join(root, "val2017"), max(1, pool_size // 4), seed + 1)
    train = _split(rng, num_train, round(TRAIN_INSTANCES * num_train / TRAIN_IMAGES),
                   image_count_full, TRAIN_IMAGES, min_one=True)
    counts = {}
    c = _write_split(out["train_json"], "train2017", train, num_train, cats, train_pool, rng, 0)
    counts.update(train_images=c["images"], train_annotations=c["annotations"])
    del train
    val = _split(rng, num_val, round(VAL_INSTANCES * num_val / VAL_IMAGES), image_count_full,
                 TRAIN_IMAGES, min_one=False)
    # val image ids follow the training ones (LVIS v1 ids are COCO ids, distinct across splits)
    c = _write_split(out["val_json"], "val2017", val, num_val, cats, val_pool, rng, num_train)
    counts.update(val_images=c["images"], val_annotations=c["annotations"])
    with open(stamp, "w") as f:
        json.dump({"spec": spec, "counts": counts}, f)
    return dict(out, **counts)


def register_lvis_shaped(root, size="10k", prefix="lvis_shaped", **kwargs):
    """
    Generates the dataset of ``size`` into ``root`` unless it is there (``kwargs``: those of
    :func:`generate_lvis_shaped`) and registers its splits as ``<prefix>_train`` and
    ``<prefix>_val``; returns the two names.
    """
    paths = generate_lvis_shaped(root, size, **kwargs)
    names = (f"{prefix}_train", f"{prefix}_val")
    for name, split in zip(names, ("train", "val")):
        register_lvis_format(name, paths[f"{split}_json"], paths["image_root"])
    return names


def extra_datasets_spec(paths, prefix="lvis_shaped"):
    """The ``LDA_EXTRA_DATASETS`` value that registers the splits of ``paths`` (returned by
    :func:`generate_lvis_shaped`) as ``<prefix>_train`` and ``<prefix>_val`` in another process."""
    return ";".join(
        f"{prefix}_{split}:{paths[f'{split}_json']}:{paths['image_root']}"
        for split in ("train", "val")
    )
