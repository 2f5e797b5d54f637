"""
Drawing of the images of the embedded dataset (see :mod:`projects_lda.worlds.embedded`):
noisy textured backgrounds, unannotated clutter, and the class shapes with their cues; and the
LVIS records of the drawn images.

The many-class variant (:mod:`projects_lda.worlds.many_class`) draws with :func:`render_many_split`
(attributes: shape, hue, shade, texture, aspect; objects placed one per cell of a partition of
the image, never dropped).

Images are BGR ``uint8`` arrays (OpenCV's convention). Polygons are in LVIS/COCO pixel
coordinates and object masks are rasterised with pycocotools, so the painted pixels of an object
are exactly its ground-truth mask.
"""
import math
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util

__all__ = [
    "MANY_SHAPES",
    "draw_background",
    "draw_clutter",
    "place_many_objects",
    "place_objects",
    "render_many_split",
    "render_split",
    "unit_shape",
]

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
    # shapes of the many-class variant only (see :data:`MANY_SHAPES`)
    if shape == "crescent":  # the unit disc minus a disc centred at (0.35, 0)
        a = np.radians(np.linspace(40, 320, 22))  # outer arc, through the leftmost point
        end_x, end_y = math.cos(a[0]), math.sin(a[0])  # its ends: (end_x, +-end_y)
        c = 0.35  # the inner arc: the circle about (c, 0) through both ends, back through the left
        r, phi = math.hypot(end_x - c, end_y), math.atan2(end_y, end_x - c)
        t = np.linspace(2 * math.pi - phi, phi, 16)[1:-1]
        outer = np.stack([np.cos(a), np.sin(a)], axis=1)
        return np.concatenate([outer, np.stack([c + r * np.cos(t), r * np.sin(t)], axis=1)])
    if shape == "heart":
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], axis=1) / 17.0
    if shape == "semicircle":
        a = np.linspace(0, math.pi, 16)
        return np.stack([np.cos(a), np.sin(a) - 0.5], axis=1)
    if shape == "tee":
        return np.array([[-0.9, -0.9], [0.9, -0.9], [0.9, -0.45], [0.22, -0.45], [0.22, 0.9],
                         [-0.22, 0.9], [-0.22, -0.45], [-0.9, -0.45]])  # fmt: skip
    if shape == "chevron":
        return np.array([[-1, -0.2], [0, 0.8], [1, -0.2], [1, -0.75], [0, 0.25], [-1, -0.75]])
    if shape == "hourglass":
        return np.array([[-0.8, -1], [0.8, -1], [0.15, 0], [0.8, 1], [-0.8, 1], [-0.15, 0]])
    raise ValueError(f"Unknown shape {shape!r}")


# The shapes of the many-class variant: those of the small variant but the ellipse (a disc with
# another aspect ratio, and aspect is an attribute of its own there) plus six more. All are
# simple polygons that stay distinct under any rotation.
MANY_SHAPES = (
    "disc", "square", "triangle", "ring", "cross", "star", "hexagon", "pentagon", "arrow",
    "crescent", "heart", "semicircle", "tee", "chevron", "hourglass",
)  # fmt: skip


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
    img[region & _pattern(rng, size, variant, max(3, round(size / 32)))] = color * _TEXTURE_DARKEN


def _pattern(rng, size, texture, period, window=None):
    """
    Boolean (size, size) stripes (random direction) or dots (random offset) of ``period``; only
    the part ``window`` = (y0, y1, x0, x1) of it if given (the same pixels as the whole's).
    """
    y0, y1, x0, x1 = window or (0, size, 0, size)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    if texture == "striped":
        theta = rng.uniform(0, math.pi)
        return np.mod(xx * math.cos(theta) + yy * math.sin(theta), period) < period / 2
    if texture == "dotted":
        step = period + 1
        ox, oy = rng.integers(0, step, 2)
        return (np.mod(xx + ox, step) < 2) & (np.mod(yy + oy, step) < 2)
    raise ValueError(f"Unknown texture {texture!r}")


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


def _image_record(image_id, size, split, file, all_ids, present):
    """The LVIS image record of a drawn image, exhaustively annotated (every absent category
    is a negative)."""
    url = _URL.format(split=split, file=file)
    return {"id": image_id, "width": size, "height": size, "license": 1, "coco_url": url,
            "flickr_url": url, "date_captured": "2021-01-01 00:00:00",
            "not_exhaustive_category_ids": [],
            "neg_category_ids": [k for k in all_ids if k not in present]}


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
        images.append(_image_record(image_id, size, split, file, all_ids, present))
    return images, annotations


# ------------------------------------------------------------------ the many-class variant
_MANY_FILL = (0.7, 1.0)  # an object's diameter / the shorter side of its cell (less 2 px)
_MANY_EMPTY_CELLS = 2  # 0-1 cell of an image is left empty (more variety of object sizes)


def _cells(rng, n, x, y, w, h):
    """
    Split the rectangle ``(x, y, w, h)`` into ``n`` disjoint cells by guillotine cuts across the
    longer side, each part's share of the side about proportional to its number of cells.
    """
    if n == 1:
        return [(x, y, w, h)]
    n1 = n // 2
    frac = min(0.75, max(0.25, n1 / n * rng.uniform(0.8, 1.25)))
    if w >= h:
        cut = w * frac
        return _cells(rng, n1, x, y, cut, h) + _cells(rng, n - n1, x + cut, y, w - cut, h)
    cut = h * frac
    return _cells(rng, n1, x, y, w, cut) + _cells(rng, n - n1, x, y + cut, w, h - cut)


def place_many_objects(rng, img, styles):
    """
    Draw objects of the many-class variant, one per cell of a random guillotine partition of
    the image (plus 0-1 empty cell), so objects never overlap and none is ever dropped: each
    object's bounding circle lies inside its cell with a margin of one pixel, its diameter
    70-100% of the cell's shorter side less 2 px (at least 6 px where the cell allows). Sizes
    vary with the number of objects and the cells.

    Args:
        styles (list[tuple]): per object, (shape, OpenCV hue 0-179, shade, texture, aspect).

    Returns:
        list[tuple]: per object, (flat polygon [x1, y1, ...] rounded to 0.01, mask area).
    """
    size = img.shape[0]
    cells = _cells(rng, len(styles) + int(rng.integers(0, _MANY_EMPTY_CELLS)), 0.0, 0.0,
                   float(size), float(size))  # fmt: skip
    cells = [cells[j] for j in rng.permutation(len(cells))]
    results = []
    for (shape, hue, shade, texture, aspect), (x, y, w, h) in zip(styles, cells):
        side = min(w, h)
        diameter = max(side * rng.uniform(*_MANY_FILL) - 2, min(6.0, side - 2))
        if diameter < 4:
            raise ValueError(f"image_size {size} is too small for {len(styles)} objects an image")
        half = diameter / 2
        centre = [rng.uniform(x + 1 + half, x + w - 1 - half),
                  rng.uniform(y + 1 + half, y + h - 1 - half)]  # fmt: skip
        ratio = _ASPECT[aspect]
        pts = unit_shape(shape).astype(np.float64) * [math.sqrt(ratio), 1 / math.sqrt(ratio)]
        pts = pts / np.linalg.norm(pts, axis=1).max()
        theta = rng.uniform(0, 2 * math.pi)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        poly = np.round(pts @ rot.T * half + centre, 2).reshape(-1).tolist()
        # the object's pixels lie inside its cell: work on the cell's window only
        window = (int(y), min(size, math.ceil(y + h)), int(x), min(size, math.ceil(x + w)))
        region = _raster(poly, size)[window[0] : window[1], window[2] : window[3]].astype(bool)
        area = int(region.sum())
        if not area:
            raise ValueError(f"image_size {size} is too small for {len(styles)} objects an image")
        value = 225 * _SHADE[shade] + rng.uniform(-8, 8)
        color = _hsv_to_bgr((hue + rng.integers(-3, 4)) % 180, rng.integers(170, 221), value)
        view = img[window[0] : window[1], window[2] : window[3]]
        view[region] = color
        if texture != "solid":  # the period follows the object's size: visible at any scale
            pattern = _pattern(rng, size, texture, max(3, round(diameter / 7)), window)
            view[region & pattern] = color * _TEXTURE_DARKEN
        results.append((poly, area))
    return results


def render_many_split(
    rng, split, image_ids, first_ann_id, assignment, styles, size, out_dir, *,
    duplicate_prob=0.0, max_copies=1, max_instances=0,
):  # fmt: skip
    """
    Draw and save (as ``out_dir/split/<id>.png``) the images of one split of the many-class
    variant (objects placed by :func:`place_many_objects`).

    Args:
        assignment (list[list[int]]): per image, the distinct class indices it shows.
        styles (list[tuple]): per class, (shape, OpenCV hue, shade, texture, aspect).
        duplicate_prob, max_copies, max_instances: each class of an image gets another instance
            with probability ``duplicate_prob``, again and again up to ``max_copies`` instances
            (a geometric number), while the image holds fewer than ``max_instances``.

    Returns:
        (images, annotations) in LVIS v1 format, exhaustively annotated (every absent category
        in ``neg_category_ids``); annotation ids start at ``first_ann_id``.
    """
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    all_ids = range(1, len(styles) + 1)
    images, annotations = [], []
    for image_id, classes in zip(image_ids, assignment):
        extra = []
        for c in classes:
            copies = 1
            while copies < max_copies and rng.random() < duplicate_prob:
                copies += 1
            extra += [c] * (copies - 1)
        objects = list(classes) + extra[: max(0, max_instances - len(classes))]
        img = draw_background(rng, size)
        draw_clutter(rng, img)
        placed = place_many_objects(rng, img, [styles[c] for c in objects])
        img = np.clip(img + rng.normal(0.0, 4.0, img.shape), 0, 255).astype(np.uint8)
        file = f"{image_id:012d}.png"
        cv2.imwrite(os.path.join(out_dir, split, file), img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        for c, (poly, area) in zip(objects, placed):
            ann_id = first_ann_id + len(annotations)
            annotations.append(_annotation(ann_id, image_id, c + 1, poly, area))
        present = set(c + 1 for c in classes)
        images.append(_image_record(image_id, size, split, file, all_ids, present))
    return images, annotations
