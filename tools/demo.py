#!/usr/bin/env python
"""
Run a trained model on images, folders, a registered dataset's images, a video or the webcam;
draw its predictions and write them as a COCO / LVIS results file. The flags are detectron2's
demo/demo.py's, plus --dataset, --num-images and --json.

    # a folder (or files, or a glob such as 'photos/*.jpg'): one drawing per image in vis/
    python tools/demo.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml \
        --input photos/ --output vis/ --json results.json \
        --opts MODEL.WEIGHTS output/lda_mask_rcnn_R_18_FPN_cpu_embedded/model_final.pth
    # the first 8 images of a registered dataset, drawn with its class names
    python tools/demo.py --config-file CONFIG --dataset lvis_embedded_val --num-images 8 \
        --output vis/ --confidence-threshold 0.3 --opts MODEL.WEIGHTS W
    # a video: the drawn video in one file (.mp4, .avi or .mkv)
    python tools/demo.py --config-file CONFIG --video-input clip.mp4 --output clip_pred.mp4 \
        --opts MODEL.WEIGHTS W

The class names come from the checkpoint (training saves them), else from the config's
datasets. --confidence-threshold sets MODEL.ROI_HEADS.SCORE_THRESH_TEST, so it also decides
which detections the results file holds (0.0001 keeps what the LVIS configs evaluate). The code:
``projects_lda.deploy.commands.demo``; docs/deployment.md.
"""
import argparse
import logging
import sys

from detectron2.utils.logger import setup_logger

from projects_lda.deploy.commands import demo, inference_config


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--config-file", required=True, metavar="FILE")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="image files, folders or glob patterns")
    src.add_argument("--dataset", help="a registered dataset, e.g. lvis_embedded_val (with --json: "
                     "its image ids)")
    src.add_argument("--video-input", help="a video file")
    src.add_argument("--webcam", action="store_true", help="camera 0, shown in a window")
    parser.add_argument(
        "--output",
        help="images: a folder (or a file name for one image); video: a file or a folder",
    )
    parser.add_argument("--num-images", type=int, default=8, help="images of --dataset drawn")
    parser.add_argument("--json", metavar="FILE", help="write the predictions (results format)")
    parser.add_argument("--annotations", metavar="FILE", help="with --json: the COCO / LVIS "
                        "annotation file the results are scored against; the image ids are its "
                        "own, matched by file name")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="smallest score kept (MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides KEY VALUE ..., e.g. MODEL.WEIGHTS model_final.pth")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="projects_lda", abbrev_name="lda")
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    try:
        cfg = inference_config(args.config_file, args.opts, args.confidence_threshold)
        summary = demo(cfg, inputs=args.input, dataset=args.dataset, num_images=args.num_images,
                       video=args.video_input, webcam=args.webcam,
                       output=args.output, json_file=args.json, progress=not args.no_progress,
                       annotations=args.annotations)
    except (FileNotFoundError, ValueError) as e:  # a config error (KeyError) keeps its traceback
        sys.exit(f"error: {e}")
    rate = summary.images / summary.seconds if summary.seconds > 0 else float("nan")
    print(f"{summary.images} images, {summary.detections} detections, {summary.seconds:.1f} s "
          f"({rate:.2f} images/s)")
    for path, reason in summary.skipped:
        print(f"skipped {path}: {reason}")
    if args.output:
        print(f"drawings: {args.output}")
    if args.json:
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
