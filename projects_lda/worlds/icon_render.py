"""
Drawing of the icon world (:mod:`projects_lda.worlds.icons`): OpenMoji icons rendered from SVG
to RGBA with resvg, varied instance by instance, composited with occlusion onto crops of real
photographs; each instance's mask is its icon's alpha minus what later instances cover.

* **Icons** (:func:`icon_rgba`): rendered once per icon at :data:`BASE_SIZE` px, cropped to the
  alpha's bounding box; instances are warped from that raster (resvg is not called per object).
* **Instances** (:func:`instance_rgba`): scale, aspect (0.8-1.25), rotation (up to 30 degrees),
  blur (a third of them), hue, saturation, brightness and contrast; no mirror image (left and
  right arrows, hands and the like are different classes).
* **Backgrounds** (:func:`background`): a random crop (a quarter to all of the shorter side),
  flip and colour change of one of :data:`PHOTOS`, scikit-image's bundled photographs whose
  licences are given beside each (docs/icon_world.md); grey photographs get a random tint.
* **Scenes** (:func:`compose`): instances are placed one after another, each on top of the
  earlier ones; a position is kept when every earlier instance keeps at least
  :data:`MIN_VISIBLE` of its pixels, and may leave up to :data:`MAX_OUTSIDE` of the instance
  outside the image (cut at the border, as objects at a photograph's edge are).
"""
import functools

import cv2
import numpy as np

__all__ = ["BASE_SIZE", "MIN_VISIBLE", "PHOTOS", "background", "compose", "icon_rgba",
           "instance_rgba"]

BASE_SIZE = 160  # px of the cached raster of an icon (its longer side after cropping)
MIN_VISIBLE = 0.5  # an instance keeps at least this share of its pixels under later ones
MAX_OUTSIDE = 0.35  # at most this share of an instance's box may fall outside the image
ALPHA_THRESHOLD = 128  # an icon's pixel belongs to the object where alpha >= this (of 255)
_PLACEMENT_TRIES = 25
# scikit-image's bundled photographs (skimage.data), with the licence its documentation gives
PHOTOS = {
    "astronaut": "public domain (NASA)",
    "brick": "CC0 (CC0Textures)",
    "camera": "CC0 (Lav Varshney)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "clock": "public domain (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "coins": "no known copyright restrictions",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "hubble_deep_field": "public domain (NASA)",
    "immunohistochemistry": "no known copyright restrictions",
    "rocket": "public domain (SpaceX)",
}


@functools.lru_cache(maxsize=None)
def _photo(name):
    """A photograph of :data:`PHOTOS` as a BGR uint8 array."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, 2::-1])  # RGB(A) -> BGR


def background(rng, height, width, photos=tuple(PHOTOS)):
    """A ``height x width`` BGR crop of a random photograph, flipped, scaled and recoloured."""
    name = photos[rng.integers(len(photos))]
    img = _photo(name)
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    ch, cw = side, min(w, max(2, int(side * width / height)))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    crop = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    out = crop.astype(np.float32)
    if name in ("brick", "camera", "clock", "coins", "grass", "gravel"):  # grey: a random tint
        out *= rng.uniform(0.6, 1.2, size=3).astype(np.float32)
    out = (out - 128.0) * rng.uniform(0.7, 1.2) + 128.0 + rng.uniform(-30, 30)
    return np.clip(out, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def icon_rgba(svg_file, size=BASE_SIZE):
    """
    The icon of ``svg_file`` as a BGRA uint8 array, rendered by resvg so that its longer side is
    ``size`` px after cropping to the alpha's bounding box (OpenMoji draws on a 72-unit square
    with a margin).
    """
    import resvg_py

    scale = 2 * size  # render large, crop, then resize to the requested longer side
    png = resvg_py.svg_to_bytes(svg_path=svg_file, width=scale, height=scale,
                                skip_system_fonts=True)
    img = cv2.imdecode(np.frombuffer(bytes(png), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"{svg_file}: resvg gave no RGBA image")
    ys, xs = np.nonzero(img[:, :, 3] >= ALPHA_THRESHOLD)
    if len(ys) == 0:
        raise ValueError(f"{svg_file}: the icon has no opaque pixel")
    img = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = img.shape[:2]
    f = size / max(h, w)
    out = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                     interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


def instance_rgba(rng, icon, longer_side):
    """
    One instance of ``icon`` (BGRA) whose box's longer side is about ``longer_side`` px: aspect,
    rotation, blur and colour drawn from ``rng``. Returns a BGRA uint8 array cropped to its
    alpha.
    """
    h, w = icon.shape[:2]
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    f = longer_side / max(h, w)
    sw, sh = max(2, round(w * f * aspect**0.5)), max(2, round(h * f / aspect**0.5))
    inst = cv2.resize(icon, (sw, sh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    angle = rng.uniform(-30, 30) if rng.random() < 0.6 else 0.0
    if angle:
        diag = int(np.ceil(np.hypot(sw, sh))) + 2
        m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
        m[:, 2] += ((diag - sw) / 2, (diag - sh) / 2)
        inst = cv2.warpAffine(inst, m, (diag, diag), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    if rng.random() < 0.33:
        inst = cv2.GaussianBlur(inst, (0, 0), rng.uniform(0.5, 1.2))
    bgr = inst[:, :, :3].astype(np.float32)
    hsv = cv2.cvtColor(bgr.clip(0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[:, :, 0] = (hsv[:, :, 0] + rng.uniform(-6, 6)) % 180
    hsv[:, :, 1] *= rng.uniform(0.75, 1.2)
    bgr = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    bgr = (bgr - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-25, 25)
    inst = np.dstack([bgr.clip(0, 255).astype(np.uint8), inst[:, :, 3]])
    ys, xs = np.nonzero(inst[:, :, 3] >= ALPHA_THRESHOLD)
    if len(ys) == 0:  # blurred away at a tiny size: keep the raster's centre pixel opaque
        inst[inst.shape[0] // 2, inst.shape[1] // 2, 3] = 255
        return inst
    return inst[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _paste_window(inst_shape, y, x, height, width):
    """The image window and the instance window of an instance placed with its top-left at
    (y, x) (possibly outside the image)."""
    h, w = inst_shape
    y0, x0, y1, x1 = max(0, y), max(0, x), min(height, y + h), min(width, x + w)
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


def compose(rng, img, instances, required):
    """
    Paste ``instances`` (BGRA arrays, in order, each on top of the earlier ones) into ``img``
    (BGR, modified in place).

    Args:
        required (list[bool]): per instance, whether it must be placed; an optional one (a
            further copy of a class already in the image) is left out when no position keeps
            every earlier instance :data:`MIN_VISIBLE` visible, a required one then takes the
            position that hides the least.

    Returns:
        list of (bool mask ``H x W`` of the visible pixels, or None for an instance left out).
    """
    height, width = img.shape[:2]
    masks, full_areas = [], []
    for inst, must in zip(instances, required):
        h, w = inst.shape[:2]
        opaque = inst[:, :, 3] >= ALPHA_THRESHOLD
        mx, my = int(w * MAX_OUTSIDE / 2), int(h * MAX_OUTSIDE / 2)
        best = None
        for _ in range(_PLACEMENT_TRIES):
            y = int(rng.integers(-my, max(-my + 1, height - h + my + 1)))
            x = int(rng.integers(-mx, max(-mx + 1, width - w + mx + 1)))
            (iy, ix), (sy, sx) = _paste_window((h, w), y, x, height, width)
            cover = np.zeros((height, width), bool)
            cover[iy, ix] = opaque[sy, sx]
            if not cover.any():
                continue
            worst = min((((m & ~cover).sum() / a) for m, a in zip(masks, full_areas)
                         if m is not None), default=1.0)
            if best is None or worst > best[0]:
                best = (worst, y, x, cover)
            if worst >= MIN_VISIBLE:
                break
        if best is None or (best[0] < MIN_VISIBLE and not must):
            masks.append(None)
            full_areas.append(0)
            continue
        _, y, x, cover = best
        (iy, ix), (sy, sx) = _paste_window((h, w), y, x, height, width)
        alpha = inst[sy, sx, 3:4].astype(np.float32) / 255.0
        view = img[iy, ix].astype(np.float32)
        img[iy, ix] = (view * (1 - alpha) + inst[sy, sx, :3] * alpha + 0.5).astype(np.uint8)
        masks = [None if m is None else m & ~cover for m in masks]
        masks.append(cover)
        full_areas.append(int(cover.sum()))
    return masks
