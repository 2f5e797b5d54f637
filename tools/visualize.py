#!/usr/bin/env python
"""
Draw a trained model's predictions (class names, scores, masks) with detectron2's Visualizer.

    # images of a registered dataset
    python tools/visualize.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml \
        --dataset lvis_embedded_val --num 8 --output vis/ \
        MODEL.WEIGHTS output/lda_mask_rcnn_R_18_FPN_cpu_embedded/model_final.pth
    # your own images, folders or globs (class names from the checkpoint)
    python tools/visualize.py --config-file CONFIG --input a.jpg photos/ --output vis/ MODEL.WEIGHTS W

One PNG per image is written into --output (with the config and log of the run). The config is
read by train_net.py's setup, as for training: same checks and messages; runs on the CPU when
CUDA is not available. The code: ``projects_lda.engine.defaults.visualize_predictions``.
tools/demo.py does the same with detectron2's demo flags, videos and a results file.
"""
import argparse
import sys

from projects_lda.engine.defaults import visualize_predictions


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="image files, folders or glob patterns")
    src.add_argument("--dataset", help="a registered dataset, e.g. lvis_embedded_val")
    parser.add_argument("--num", type=int, default=8, help="images of --dataset to draw")
    parser.add_argument("--output", required=True, help="folder for the PNGs")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="smallest score drawn")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        written = visualize_predictions(
            args.config_file, args.opts, args.output, dataset=args.dataset,
            num_images=args.num, files=args.input, score_thresh=args.score_thresh,
        )
    except (FileNotFoundError, ValueError) as e:  # a config error (KeyError) keeps its traceback
        sys.exit(str(e))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
