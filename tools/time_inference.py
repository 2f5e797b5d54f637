#!/usr/bin/env python
"""
CPU time per image of LDA and the baseline, eager, as TorchScript and under ONNX Runtime, with
the ratios (docs/deployment.md holds the figures).

    python tools/time_inference.py                      # the embedded configs, 20 test images
    python tools/time_inference.py --weights LDA_WEIGHTS BASELINE_WEIGHTS  # trained ones

Without --weights each model keeps its initial weights (seeded); MODEL.ROI_HEADS.SCORE_THRESH_TEST
is 0 so that every image gives TEST.DETECTIONS_PER_IMAGE detections to both models: the same
work whatever the weights. Runs on the CPU with --threads torch / ONNX Runtime threads. The
code: ``projects_lda.deploy.timing``.
"""
import argparse
import importlib.util
import logging

import torch

from detectron2.utils.logger import setup_logger

from projects_lda.deploy.commands import inference_config
from projects_lda.deploy.timing import model_runners, ratios, time_runners

CONFIGS = {
    "LDA": "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
    "baseline": "configs/Embedded/mask_rcnn_R_18_FPN_cpu_embedded.yaml",
}


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--weights", nargs=2, metavar=("LDA", "BASELINE"),
                        help="trained weights of the two configs (default: initial weights)")
    parser.add_argument("--images", type=int, default=20, help="test images timed")
    parser.add_argument("--repeats", type=int, default=3, help="passes; each image's best counts")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed runs first (TorchScript optimises its graph on them)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--formats", nargs="+", default=["eager", "torchscript", "onnx"],
                        choices=["eager", "torchscript", "onnx"])
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="projects_lda", abbrev_name="lda")
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    formats = [f for f in args.formats
               if f != "onnx" or importlib.util.find_spec("onnxruntime") is not None]
    if formats != args.formats:
        print("onnxruntime is not installed (pip install -e .[export]): ONNX is not timed")
    runners, inputs = {}, {}
    for i, (name, config) in enumerate(CONFIGS.items()):
        weights = args.weights[i] if args.weights else ""
        cfg = inference_config(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights,
                                        *args.opts], confidence_threshold=0.0)
        runners[name], inputs[name] = model_runners(cfg, formats=formats,
                                                    num_images=args.images, threads=args.threads)
    # one pass over the images with every runner of both models, interleaved
    flat = {(m, r): run for m, per in runners.items() for r, run in per.items()}
    seconds = {}
    for (model, runner), s in time_runners(flat, inputs["LDA"], repeats=args.repeats,
                                           warmup=args.warmup).items():
        seconds.setdefault(model, {})[runner] = s
    with torch.no_grad():
        counts = {m: [len(per["eager"]([x])[0]["instances"]) for x in inputs[m]]
                  for m, per in runners.items() if "eager" in per}
    print(f"{args.images} test images, {args.repeats} repeats, {args.threads} thread(s), "
          f"weights: {'given' if args.weights else 'initial (seeded)'}; detections per image: "
          + ", ".join(f"{m} {sum(c) / len(c):.1f}" for m, c in counts.items()))
    print("| model | runner | ms / image | vs eager | vs baseline |")
    print("|---|---|---|---|---|")
    print("\n".join(ratios(seconds, "baseline")))


if __name__ == "__main__":
    main()
