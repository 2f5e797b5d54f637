#!/usr/bin/env python
"""
Draw a trained model's predictions (class names, scores, masks) with detectron2's Visualizer.

    # images of a registered dataset
    python tools/visualize.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml \
        --dataset lvis_embedded_val --num 8 --output vis/ \
        MODEL.WEIGHTS output/lda_mask_rcnn_R_18_FPN_cpu_embedded/model_final.pth
    # your own images (class names from the config's first test dataset)
    python tools/visualize.py --config-file CONFIG --input a.jpg b.jpg --output vis/ MODEL.WEIGHTS W

One PNG per image is written into --output (with the config and log of the run). The config is
read by train_net.setup, as for training: same checks and messages; runs on the CPU when CUDA is
not available.
"""
import argparse
import os
import sys

from detectron2.data import DatasetCatalog

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train_net  # noqa: E402  (the repository root)
from projects_lda.visualize import visualize_files  # noqa: E402


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
    cfg = train_net.setup(
        argparse.Namespace(
            config_file=args.config_file,
            opts=list(args.opts) + ["OUTPUT_DIR", args.output],
            eval_only=True,
        )
    )
    if not cfg.MODEL.WEIGHTS:
        sys.exit("MODEL.WEIGHTS: give the trained weights (MODEL.WEIGHTS path/to/model_final.pth)")
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
