#!/usr/bin/env python
"""
Put drawings of the same images by several models side by side, one row an image, one column a
model, with the models' names on top and an optional line of text below (an attribution).

    # the same four test images drawn by the baseline and by LDA (tools/demo.py --dataset)
    python tools/demo.py --config-file B.yaml --dataset lvis_icons_small_test --num-images 4 \
        --output vis_baseline/ --opts MODEL.WEIGHTS baseline.pth
    python tools/demo.py --config-file L.yaml --dataset lvis_icons_small_test --num-images 4 \
        --output vis_lda/ --opts MODEL.WEIGHTS lda.pth
    python tools/side_by_side.py vis_baseline/ vis_lda/ --labels baseline LDA --output fig.jpg
    # the same, after a first column with the images' annotations
    python tools/side_by_side.py vis_baseline/ vis_lda/ --labels baseline LDA \
        --ground-truth lvis_icons_small_test --output fig.jpg

Every folder must hold the same file names (the drawings of the same images).
"""
import argparse
import os
import sys

import cv2

from projects_lda.deploy.montage import side_by_side


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("folders", nargs="+", help="folders of drawings, one a model")
    parser.add_argument("--labels", nargs="+", required=True, help="a name per folder")
    parser.add_argument("--output", required=True, help="the image written (.jpg or .png)")
    parser.add_argument("--max-rows", type=int, help="at most this many images")
    parser.add_argument("--ground-truth", metavar="DATASET", help="a registered dataset: a first "
                        "column draws its annotations of the same images")
    parser.add_argument("--footer", default="", help="a line of text below (e.g. attribution)")
    args = parser.parse_args(argv)
    try:
        grid = side_by_side(args.folders, args.labels, args.footer, args.max_rows,
                            ground_truth=args.ground_truth)
    except (OSError, ValueError) as e:
        sys.exit(f"side_by_side.py: {e}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if not cv2.imwrite(args.output, grid, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        sys.exit(f"side_by_side.py: cannot write {args.output}")
    print(f"wrote {args.output} ({grid.shape[1]}x{grid.shape[0]})")


if __name__ == "__main__":
    main()
