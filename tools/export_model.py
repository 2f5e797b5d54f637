#!/usr/bin/env python
"""
Export a trained model to TorchScript or ONNX and check it against the eager model. The flags
are detectron2's tools/deploy/export_model.py's; config overrides come last (KEY VALUE ...).

    python tools/export_model.py \
        --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml \
        --format torchscript --export-method tracing --output exported/ \
        MODEL.WEIGHTS output/lda_mask_rcnn_R_18_FPN_cpu_embedded/model_final.pth
    # ONNX (needs `pip install -e .[export]`: onnx, onnxruntime)
    python tools/export_model.py --config-file CONFIG --format onnx --output exported/ \
        MODEL.WEIGHTS W

--output receives model.ts or model.onnx and model.json (resize, channel order, output names,
class names). The model is traced on --sample-image, or on the first image of
DATASETS.TEST[0]; the exported file is then run beside the eager model on that image and the
next test images (--check-images in all), and the largest box and score differences and the
smallest mask IoU are printed; the command fails unless each eager detection has an exported
one of its class with a score within 1e-4, boxes within 1e-4 px and a mask IoU of at least 0.99.
--run-eval evaluates the exported model on DATASETS.TEST[0]. The code:
``projects_lda.deploy.commands.export``; docs/deployment.md.
"""
import argparse
import logging
import sys

from detectron2.utils.logger import setup_logger

from projects_lda.deploy.commands import export, inference_config
from projects_lda.deploy.export import ExportError


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    parser.add_argument("--export-method", choices=["tracing", "scripting"], default="tracing")
    parser.add_argument("--output", required=True, help="folder for the exported model")
    parser.add_argument("--sample-image", help="image to trace on (default: the first test image)")
    parser.add_argument("--check-images", type=int, default=3,
                        help="images the parity with the eager model is checked on")
    parser.add_argument("--run-eval", action="store_true",
                        help="evaluate the exported model on DATASETS.TEST[0]")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="projects_lda", abbrev_name="lda")
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    try:
        cfg = inference_config(args.config_file, args.opts)
        out = export(cfg, output=args.output, fmt=args.format, method=args.export_method,
                     sample_image=args.sample_image, num_check=args.check_images,
                     run_eval=args.run_eval)
    except (FileNotFoundError, ValueError, ExportError, ImportError) as e:
        sys.exit(f"error: {e}")
    print(f"exported: {out['path']}")
    for f, p in zip(out["files"], out["parity"]):
        print(f"{f}: {p.detections} detections (exported {p.exported_detections}, unmatched "
              f"{p.unmatched}), largest box difference {p.max_box_diff:.3g} px, score "
              f"{p.max_score_diff:.3g}, smallest mask IoU {p.min_mask_iou:.4f}")
    parity = out["parity"]
    print(f"{len(parity)} images: largest box difference "
          f"{max(p.max_box_diff for p in parity):.3g} px, score "
          f"{max(p.max_score_diff for p in parity):.3g}, unmatched "
          f"{sum(p.unmatched for p in parity)}, smallest mask IoU "
          f"{min(p.min_mask_iou for p in parity):.4f}")
    if out["problems"]:
        sys.exit("parity with the eager model failed:\n" + "\n".join(out["problems"]))


if __name__ == "__main__":
    main()
