#!/usr/bin/env python
"""
Draw a trained model's predictions (class names, scores, masks) with detectron2's Visualizer.

    # images of a registered dataset
    python tools/visualize.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml \
        --dataset lvis_embedded_val --num 8 --output vis/ \
        MODEL.WEIGHTS output/lda_mask_rcnn_R_18_FPN_cpu_embedded/model_final.pth
    # your own images (class names from the config's first test dataset)
    python tools/visualize.py --config-file CONFIG --input a.jpg b.jpg --output vis/ MODEL.WEIGHTS W

One PNG per image is written into --output. Runs on the CPU when CUDA is not available.
"""
import argparse
import os
import sys

import torch

from detectron2.data import DatasetCatalog

from projects_lda import get_project_cfg
from projects_lda.visualize import visualize_files


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="image files")
    src.add_argument("--dataset", help="a registered dataset, e.g. lvis_embedded_val")
    parser.add_argument("--num", type=int, default=8, help="images of --dataset to draw")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="smallest score drawn")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    if not cfg.MODEL.WEIGHTS or not os.path.isfile(cfg.MODEL.WEIGHTS):
        sys.exit(f"MODEL.WEIGHTS: trained weights not found: {cfg.MODEL.WEIGHTS!r}")
    cfg.freeze()
    if args.dataset:
        files = [d["file_name"] for d in DatasetCatalog.get(args.dataset)[: args.num]]
        names_from = args.dataset
    else:
        missing = [f for f in args.input if not os.path.isfile(f)]
        if missing:
            sys.exit(f"--input: file(s) not found: {', '.join(missing)}")
        files, names_from = args.input, cfg.DATASETS.TEST[0]
    for path in visualize_files(cfg, files, args.output, names_from, args.score_thresh):
        print(path)


if __name__ == "__main__":
    main()
