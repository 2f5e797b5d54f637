"""
A synthetic LVIS-shaped evaluation set: ground truth with LVIS's federated fields, and model
outputs (detectron2 ``Instances``) for it. Used by the evaluator's parity tests and by
``tools/eval_benchmark.py``; nothing here is drawn or trained.

Ground truth: categories split into rare / common / frequent in LVIS v1's proportions (337 /
461 / 405 of 1,203), a few of them never annotated in this split; per image a handful of
annotated categories (frequent ones more often), 1-4 instances each with an octagon polygon,
``neg_category_ids`` (categories verified absent) and ``not_exhaustive_category_ids`` (some of
the annotated ones). Detections: some on the ground truth (right class, a confusable
neighbouring class, or a jittered box), the rest anywhere with any class, most of them of
categories the image was never checked for, as a real detector's 300 per image on LVIS are.
"""
import numpy as np
import torch

from detectron2.structures import Boxes, Instances

__all__ = ["LVIS_V1_SPLIT", "index_by_image", "make_detections", "make_lvis_like_gt"]

LVIS_V1_SPLIT = (337, 461, 405)  # rare, common, frequent categories of LVIS v1


def _split(num_categories):
    total = sum(LVIS_V1_SPLIT)
    r = max(1, round(num_categories * LVIS_V1_SPLIT[0] / total))
    c = max(1, round(num_categories * LVIS_V1_SPLIT[1] / total))
    return r, c, num_categories - r - c


def _octagon(x, y, w, h):
    dx, dy = w * 0.29, h * 0.29
    pts = [x + dx, y, x + w - dx, y, x + w, y + dy, x + w, y + h - dy,
           x + w - dx, y + h, x + dx, y + h, x, y + h - dy, x, y + dy]
    return [float(p) for p in pts], float(w * h - 2 * dx * dy)  # area: box minus 4 corners


def make_lvis_like_gt(num_images, num_categories=1203, *, seed=0, image_size=(480, 640),
                      instances_per_image=12.4, neg_per_image=10, unannotated_fraction=0.05):
    """
    An LVIS-format ground-truth dict (images, annotations, categories). ``image_size`` is
    (height, width) of every image; ``instances_per_image`` the mean number of instances
    (LVIS v1 val: about 12.4).
    """
    rng = np.random.default_rng(seed)
    r, c, f = _split(num_categories)
    freq = ["r"] * r + ["c"] * c + ["f"] * f
    cats = [{"id": i + 1, "name": f"category_{i + 1}", "synset": f"category_{i + 1}.n.01",
             "frequency": freq[i], "image_count": 0, "instance_count": 0}
            for i in range(num_categories)]
    # frequent categories appear far more often; a few categories never appear in this split
    weight = np.array([{"r": 1.0, "c": 6.0, "f": 40.0}[q] for q in freq])
    never = rng.choice(num_categories, max(1, int(unannotated_fraction * num_categories)),
                       replace=False)
    weight[never] = 0.0
    weight /= weight.sum()
    h, w = image_size
    images, anns = [], []
    for img_id in range(1, num_images + 1):
        n_inst = max(1, int(rng.poisson(instances_per_image)))
        n_cats = int(np.clip(rng.poisson(n_inst / 3.0), 1, n_inst))
        pos = rng.choice(num_categories, n_cats, replace=False, p=weight) + 1
        counts = rng.multinomial(n_inst - n_cats, np.full(n_cats, 1.0 / n_cats)) + 1
        for cat, k in zip(pos.tolist(), counts.tolist()):
            for _ in range(k):
                # log-uniform sizes: small, medium and large objects (LVIS area ranges)
                bw, bh = np.exp(rng.uniform(np.log(6), np.log(0.8 * w), 2)) * [1.0, h / w]
                x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                poly, area = _octagon(x, y, bw, bh)
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat,
                             "bbox": [float(x), float(y), float(bw), float(bh)],
                             "area": area, "segmentation": [poly]})
        absent = np.setdiff1d(np.arange(1, num_categories + 1), pos)
        neg = rng.choice(absent, min(len(absent), int(rng.integers(0, 2 * neg_per_image + 1))),
                         replace=False)
        not_exh = [int(p) for p in pos if rng.random() < 0.1]
        images.append({"id": img_id, "height": h, "width": w,
                       "file_name": f"{img_id:012d}.jpg",
                       "coco_url": f"http://images/{img_id:012d}.jpg",
                       "neg_category_ids": sorted(int(n) for n in neg),
                       "not_exhaustive_category_ids": sorted(not_exh)})
    for a in anns:
        cats[a["category_id"] - 1]["instance_count"] += 1
    return {"images": images, "annotations": anns, "categories": cats,
            "info": {"description": "synthetic LVIS-shaped set"}, "licenses": []}


def make_detections(gt, image, num_dets=300, *, seed=0, with_masks=True, score_decimals=None,
                    mask_buffer=None):
    """
    The model output for one image of ``gt``: ``Instances`` with ``pred_boxes`` (XYXY),
    ``scores``, ``pred_classes`` (0-based, category id - 1) and, if ``with_masks``, full-image
    boolean ``pred_masks`` (the box filled, as a pasted mask). ``score_decimals`` rounds the
    scores, which creates ties. ``mask_buffer``: a bool tensor of at least (num_dets, H, W)
    that the masks are written into (saves allocating them for every image; the previous
    image's masks are overwritten).
    """
    rng = np.random.default_rng([seed, image["id"]])
    h, w = image["height"], image["width"]
    num_cats = len(gt["categories"])
    anns = gt["_by_image"][image["id"]] if "_by_image" in gt else \
        [a for a in gt["annotations"] if a["image_id"] == image["id"]]
    boxes = np.empty((num_dets, 4), dtype=np.float32)
    classes = rng.integers(0, num_cats, num_dets)
    scores = rng.uniform(0.0, 0.6, num_dets)
    on_gt = rng.random(num_dets) < (0.25 if anns else 0.0)
    checked = np.array(sorted({a["category_id"] for a in anns} | set(image["neg_category_ids"])))
    for i in range(num_dets):
        if on_gt[i]:
            a = anns[int(rng.integers(len(anns)))]
            x, y, bw, bh = a["bbox"]
            jitter = rng.normal(0, 0.1, 4) * [bw, bh, bw, bh]
            x0, y0 = x + jitter[0], y + jitter[1]
            x1, y1 = x0 + bw + jitter[2], y0 + bh + jitter[3]
            u = rng.random()
            cat = a["category_id"] if u < 0.7 else (  # else a confusable neighbour
                a["category_id"] % num_cats + 1)
            classes[i] = cat - 1
            scores[i] = rng.uniform(0.2, 1.0)
        else:
            bw, bh = np.exp(rng.uniform(np.log(4), np.log(0.6 * w), 2)) * [1.0, h / w]
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            x1, y1 = x0 + bw, y0 + bh
            if len(checked) and rng.random() < 0.1:
                classes[i] = int(rng.choice(checked)) - 1
        boxes[i] = [max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)]
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    if score_decimals is not None:
        scores = np.round(scores, score_decimals)
    inst = Instances((h, w))
    inst.pred_boxes = Boxes(torch.from_numpy(boxes))
    inst.scores = torch.from_numpy(scores.astype(np.float32))
    inst.pred_classes = torch.from_numpy(classes.astype(np.int64))
    if with_masks:  # box-filled masks, built in one broadcast (into mask_buffer if given)
        ib = torch.from_numpy(np.floor(boxes).astype(np.int64))
        rows = torch.arange(h)[None, :]
        cols = torch.arange(w)[None, :]
        in_rows = (rows >= ib[:, 1:2]) & (rows <= ib[:, 3:4])
        in_cols = (cols >= ib[:, 0:1]) & (cols <= ib[:, 2:3])
        out = None if mask_buffer is None else mask_buffer[:num_dets]
        inst.pred_masks = torch.logical_and(in_rows[:, :, None], in_cols[:, None, :], out=out)
    return inst


def index_by_image(gt):
    """Adds ``gt["_by_image"]``: image id -> annotations (makes make_detections O(1) per image;
    remove the key before writing the dict as JSON)."""
    by_image = {img["id"]: [] for img in gt["images"]}
    for a in gt["annotations"]:
        by_image[a["image_id"]].append(a)
    gt["_by_image"] = by_image
    return gt
