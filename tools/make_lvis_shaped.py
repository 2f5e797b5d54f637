#!/usr/bin/env python
"""
Write an LVIS v1-shaped dataset (projects_lda/data/lvis_shaped.py): LVIS v1 field names, its
1,203 categories with the 337 / 461 / 405 rare / common / frequent split, ~12.7 instances per
training image, polygon masks, and a small pool of 640x480 images shared by all records.

    python tools/make_lvis_shaped.py --size 10k --root /tmp/lvis_shaped_10k
    python tools/make_lvis_shaped.py --size 100k --root /tmp/lvis_shaped_100k   # LVIS v1 size

It prints the ``LDA_EXTRA_DATASETS`` value that registers the two splits as
``lvis_shaped_train`` / ``lvis_shaped_val`` for train_net.py. Labels and images are unrelated:
what trains on it measures time and memory, not accuracy.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from projects_lda.data.lvis_shaped import SIZES, generate_lvis_shaped  # noqa: E402


def dataset_spec(paths, prefix="lvis_shaped"):
    """The ``LDA_EXTRA_DATASETS`` value registering ``<prefix>_train`` and ``<prefix>_val``."""
    return ";".join(
        f"{prefix}_{split}:{paths[f'{split}_json']}:{paths['image_root']}" for split in ("train", "val")
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="10k", help=f"one of {sorted(SIZES)} or a number of training images")
    parser.add_argument("--root", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-size", type=int, default=32, help="distinct training image files")
    parser.add_argument("--force", action="store_true", help="write again even if present")
    args = parser.parse_args(argv)
    size = int(args.size) if args.size.isdigit() else args.size
    start = time.perf_counter()
    paths = generate_lvis_shaped(args.root, size, seed=args.seed, pool_size=args.pool_size, force=args.force)
    print(
        f"train: {paths['train_images']} images, {paths['train_annotations']} instances; "
        f"val: {paths['val_images']} images, {paths['val_annotations']} instances "
        f"({time.perf_counter() - start:.1f} s)"
    )
    print(f"LDA_EXTRA_DATASETS='{dataset_spec(paths)}'")
    return paths


if __name__ == "__main__":
    main()
