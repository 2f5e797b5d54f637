"""
Drawing of the images of the embedded dataset (see :mod:`projects_lda.data.embedded`):
noisy textured backgrounds, unannotated clutter, and the class shapes with their cues; and the
LVIS records of the drawn images.

Images are BGR ``uint8`` arrays (OpenCV's convention). Polygons are in LVIS/COCO pixel
coordinates and object masks are rasterised with pycocotools, so the painted pixels of an object
are exactly its ground-truth mask.
"""
import math
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = ["draw_background", "draw_clutter", "place_objects", "render_split", "unit_shape"]

_SHADE = {"light": 1.0, "medium": 0.72, "dark": 0.48}  # value multipliers of the "shade" cue
_ASPECT = {"regular": 1.0, "stretched": 1.5, "elongated": 2.1}  # ratios of the "aspect" cue
_TEXTURE_DARKEN = 0.4  # stripes / dots colour = object colour times this
_TRIES = 60  # placements tried per object before dropping it
_URL = "http://embedded.invalid/{split}/{file}"  # LVIS v1 style; only the last two parts matter


def _regular(n, radius=1.0, phase=0.0):
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def unit_shape(shape):
    """Vertices (N, 2) of a shape centred on 0 with radius about 1 (before normalisation)."""
    if shape in ("disc", "ellipse"):
        pts = _regular(28)
        return pts * [1.0, 0.55] if shape == "ellipse" else pts
    if shape == "square":
        return np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    if shape in ("triangle", "pentagon", "hexagon"):
        return _regular({"triangle": 3, "pentagon": 5, "hexagon": 6}[shape], phase=-math.pi / 2)
    if shape == "star":
        pts = _regular(10, phase=-math.pi / 2)
        return pts * np.where(np.arange(10) % 2 == 0, 1.0, 0.45)[:, None]
    if shape == "ring":  # an annulus with a gap: a simple polygon, no hole
        gap = math.radians(50)
        a = np.linspace(gap / 2, 2 * math.pi - gap / 2, 20)
        outer = np.stack([np.cos(a), np.sin(a)], axis=1)
        return np.concatenate([outer, 0.55 * outer[::-1]])
    if shape == "cross":
        w = 0.33
        quarter = np.array([[w, -w], [1, -w], [1, w], [w, w]])
        rot = np.array([[0.0, -1.0], [1.0, 0.0]])
        return np.concatenate([quarter @ np.linalg.matrix_power(rot, k).T for k in range(4)])
    if shape == "arrow":
        return np.array(
            [[-1, -0.25], [0.2, -0.25], [0.2, -0.6], [1, 0], [0.2, 0.6], [0.2, 0.25], [-1, 0.25]]
        )
    raise ValueError(f"Unknown shape {shape!r}")


def draw_background(rng, size):
    """A smooth random tinted gray field plus fine noise."""
    low = int(rng.integers(3, 8))
    base = rng.uniform(60, 190) + rng.uniform(-20, 20, 3)
    grid = base + rng.normal(0, 22, (low, low, 1)) + rng.normal(0, 6, (low, low, 3))
    img = cv2.resize(grid.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = img + rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _hsv_to_bgr(h, s, v):
    hsv = np.array([[[h, s, v]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64)


def draw_clutter(rng, img):
    """Unannotated distractors: thin lines and small irregular blobs (smaller than objects)."""
    size = img.shape[0]
    for _ in range(int(rng.integers(2, 7))):
        p = np.round(rng.uniform(0, size - 1, 4)).astype(int)
        color = tuple(float(x) for x in rng.uniform(30, 230, 3))
        cv2.line(img, (p[0], p[1]), (p[2], p[3]), color, 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 5))):
        n = int(rng.integers(4, 8))
        radius = size * rng.uniform(0.02, 0.05)
        pts = _regular(n, phase=rng.uniform(0, math.pi)) * rng.uniform(0.5, 1.0, (n, 1)) * radius
        pts = pts + rng.uniform(radius, size - radius, 2)
        color = _hsv_to_bgr(rng.integers(0, 180), rng.integers(0, 160), rng.integers(60, 230))
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], tuple(color), cv2.LINE_AA, 4)


def _polygon(rng, shape, cue, variant, diameter, size):
    pts = unit_shape(shape).astype(np.float64)
    if cue == "aspect":
        ratio = _ASPECT[variant]
        pts = pts * [math.sqrt(ratio), 1 / math.sqrt(ratio)]
    pts = pts / np.linalg.norm(pts, axis=1).max()
    theta = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    half = diameter / 2
    return pts @ rot.T * half + rng.uniform(half + 1, size - half - 1, 2)


def _raster(poly, size):
    """Mask of a flat polygon, rasterised as LVIS/COCO tools do (drawn pixels == GT mask)."""
    return mask_util.decode(mask_util.frPyObjects([poly], size, size))[:, :, 0]


def _paint(rng, img, mask, cue, variant, hue):
    """Fill ``mask`` with the class colour and, for the texture cue, stripes or dots."""
    value = 225 * (_SHADE[variant] if cue == "shade" else 0.9) + rng.uniform(-8, 8)
    color = _hsv_to_bgr((hue + rng.integers(-3, 4)) % 180, rng.integers(170, 221), value)
    region = mask.astype(bool)
    img[region] = color
    if cue != "texture" or variant == "solid":
        return
    size = img.shape[0]
    period = max(3, round(size / 32))
    yy, xx = np.mgrid[0:size, 0:size]
    if variant == "striped":
        theta = rng.uniform(0, math.pi)
        pattern = np.mod(xx * math.cos(theta) + yy * math.sin(theta), period) < period / 2
    else:  # dotted
        step = period + 1
        ox, oy = rng.integers(0, step, 2)
        pattern = (np.mod(xx + ox, step) < 2) & (np.mod(yy + oy, step) < 2)
    img[region & pattern] = color * _TEXTURE_DARKEN


def place_objects(rng, img, classes, num_groups):
    """
    Draw objects of the given classes at random non-overlapping places (a gap of at least one
    pixel, by rejection sampling) and sizes (log-uniform diameters from 11% to 37.5% of the
    image side, largest first).

    Args:
        classes (list[tuple]): (group index, shape, cue, variant) of each object.
        num_groups (int): number of groups, to spread the group hues.

    Returns:
        list[tuple]: per object, (flat polygon [x1, y1, ...] rounded to 0.01, mask area in
        pixels), or (None, 0) if it could not be placed.
    """
    size = img.shape[0]
    smin, smax = max(8.0, 0.11 * size), 0.375 * size
    diameters = np.exp(rng.uniform(math.log(smin), math.log(smax), len(classes)))
    occupied = np.zeros((size, size), np.uint8)
    blocked = occupied  # occupied, dilated by one pixel
    results = [(None, 0)] * len(classes)
    for idx in np.argsort(-diameters, kind="stable"):
        group, shape, cue, variant = classes[idx]
        diameter = diameters[idx]
        for attempt in range(_TRIES):
            if attempt and attempt % 15 == 0:
                diameter = max(smin, diameter * 0.8)
            pts = _polygon(rng, shape, cue, variant, diameter, size)
            poly = [round(float(v), 2) for v in pts.reshape(-1)]
            mask = _raster(poly, size)
            if not (mask & blocked).any():
                break
        else:
            continue
        occupied |= mask
        blocked = cv2.dilate(occupied, np.ones((3, 3), np.uint8))
        _paint(rng, img, mask, cue, variant, round(180 * group / num_groups))
        results[idx] = (poly, int(mask.sum()))
    return results


def _annotation(ann_id, image_id, category_id, poly, area):
    xs, ys = poly[0::2], poly[1::2]
    x0, y0 = min(xs), min(ys)
    bbox = [round(x0, 2), round(y0, 2), round(max(xs) - x0, 2), round(max(ys) - y0, 2)]
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "segmentation": [poly], "bbox": bbox, "area": float(area)}  # fmt: skip


def render_split(
    rng, split, image_ids, first_ann_id, assignment, table, size, out_dir, num_groups,
    duplicate_prob=0.0, max_objects=0,
):  # fmt: skip
    """
    Draw and save (as ``out_dir/split/<id>.png``) the images of one split.

    Args:
        assignment (list[list[int]]): per image, the class indices (into ``table``) it shows.
        table (list[tuple]): (group index, shape, cue, variant) per class.
        duplicate_prob, max_objects: each class of an image gets a second instance with
            probability ``duplicate_prob`` while the image has fewer than ``max_objects``.

    Returns:
        (images, annotations) in LVIS v1 format; annotation ids start at ``first_ann_id``.
    """
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    all_ids = range(1, len(table) + 1)
    images, annotations = [], []
    for image_id, classes in zip(image_ids, assignment):
        extra = [c for c in classes if duplicate_prob and rng.random() < duplicate_prob]
        classes = classes + extra[: max(0, max_objects - len(classes))]
        img = draw_background(rng, size)
        draw_clutter(rng, img)
        objects = place_objects(rng, img, [table[c] for c in classes], num_groups)
        img = np.clip(img + rng.normal(0.0, 4.0, img.shape), 0, 255).astype(np.uint8)
        file = f"{image_id:012d}.png"
        cv2.imwrite(os.path.join(out_dir, split, file), img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        present = set()
        for c, (poly, area) in zip(classes, objects):
            if poly is not None:  # None: could not be placed without overlap, dropped
                ann_id = first_ann_id + len(annotations)
                annotations.append(_annotation(ann_id, image_id, c + 1, poly, area))
                present.add(c + 1)
        url = _URL.format(split=split, file=file)
        images.append(
            {"id": image_id, "width": size, "height": size, "license": 1, "coco_url": url,
             "flickr_url": url, "date_captured": "2021-01-01 00:00:00",
             "not_exhaustive_category_ids": [],
             "neg_category_ids": [k for k in all_ids if k not in present]}
        )  # fmt: skip
    return images, annotations
