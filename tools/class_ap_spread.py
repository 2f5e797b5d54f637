#!/usr/bin/env python
"""
How many evaluation instances per class does a class AP need? Bootstrap spread of one class's
AP at n ground-truth instances, for a simulated detector (used to size the embedded dataset's
val and test splits, see docs/datasets.md).

The simulated class: n images with one instance each; the detector finds an instance with
probability ``--recall``, scoring it N(1, 1); each image also gets a false positive of the class
with probability ``--fp-rate``, scored N(0, 1). AP is COCO's 101-point interpolated precision.
The spread is the standard deviation of the AP over bootstrap resamples of the images (as the
benchmark's confidence intervals resample evaluation images), averaged over simulated datasets.

    python tools/class_ap_spread.py --n 5 14 40 60
"""
import argparse

import numpy as np


def average_precision(scores, is_tp, num_gt):
    """COCO-style 101-point interpolated AP of one class (one IoU threshold)."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # interpolated
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def simulate(rng, n, recall, fp_rate):
    """Per image: (scores, is_tp) of its detections."""
    found = rng.random(n) < recall
    has_fp = rng.random(n) < fp_rate
    images = []
    for f, h in zip(found, has_fp):
        s = ([rng.normal(1.0, 1.0)] if f else []) + ([rng.normal(0.0, 1.0)] if h else [])
        images.append((np.array(s), np.array([True] * int(f) + [False] * int(h), dtype=bool)))
    return images


def bootstrap_sd(rng, images, samples):
    aps = []
    for _ in range(samples):
        pick = rng.integers(len(images), size=len(images))
        scores = np.concatenate([images[i][0] for i in pick])
        is_tp = np.concatenate([images[i][1] for i in pick])
        aps.append(average_precision(scores, is_tp, len(pick)))
    return float(np.std(aps))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[5, 14, 40, 60])
    p.add_argument("--recall", type=float, default=0.7)
    p.add_argument("--fp-rate", type=float, default=1.0)
    p.add_argument("--datasets", type=int, default=50)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print("| instances per class | class AP (mean) | bootstrap SD of the class AP | one box |")
    print("|---|---|---|---|")
    for n in args.n:
        aps, sds = [], []
        for _ in range(args.datasets):
            images = simulate(rng, n, args.recall, args.fp_rate)
            scores = np.concatenate([s for s, _ in images])
            is_tp = np.concatenate([t for _, t in images])
            aps.append(average_precision(scores, is_tp, n))
            sds.append(bootstrap_sd(rng, images, args.bootstrap))
        print(f"| {n} | {100 * np.mean(aps):.1f} | {100 * np.mean(sds):.1f} | "
              f"{100 / n:.1f} |")


if __name__ == "__main__":
    main()
