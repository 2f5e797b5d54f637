#!/usr/bin/env python
"""
Run the ``configs/LVISv1/`` configs for real, at LVIS v1's shape, on an LVIS v1-shaped dataset
(projects_lda/data/lvis_shaped.py): a few training iterations at 800 px with 1,203 classes
(train_net.py's Trainer, its hooks, checkpointer and evaluator), then inference and LVIS
evaluation on a few validation images with 300 detections per image and score threshold 1e-4.

Weights are random (``MODEL.WEIGHTS ""``: no ImageNet weights here; the frozen BatchNorm
statistics are calibrated on one batch, tools/lvis_rehearsal.py) and the learning rate is 1e-5 (a ResNet-50 with frozen BatchNorm diverges from random init at the configs' 0.01): the
losses and APs mean nothing; what is checked is that every config trains, evaluates and returns
finite losses and well-formed detections.

    python tools/run_lvis_configs.py                          # all 23 configs (~1-2 min each on a CPU)
    python tools/run_lvis_configs.py --configs 'configs/LVISv1/*R_50_FPN_12ep*' --iters 2

Prints one line per config: seconds for training and evaluation, the losses of the last
iteration, detections per image and the lowest score kept.
"""
import argparse
import collections
import glob
import json
import os
import shutil
import sys
import tempfile
import time

import torch

from detectron2.data import DatasetCatalog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from lvis_rehearsal import calibrate_frozen_bn  # noqa: E402

from projects_lda.evaluation.lvis_evaluation import RESULTS_JSON  # noqa: E402

MAX_DETECTIONS, SCORE_THRESH = 300, 1e-4


def register_shaped(root, size="tiny", val_size=2):
    """Generates (if needed) and registers ``lvis_shaped_run_{train,val}``; returns the names."""
    from detectron2.data import DatasetCatalog
    from projects_lda.data import register_lvis_format
    from projects_lda.data.lvis_shaped import generate_lvis_shaped

    paths = generate_lvis_shaped(root, size, val_size=val_size, pool_size=4)
    names = []
    for split in ("train", "val"):
        name = f"lvis_shaped_run_{split}"
        if name not in DatasetCatalog.list():
            register_lvis_format(name, paths[f"{split}_json"], paths["image_root"])
        names.append(name)
    return names


def run_config(config_file, train_name, val_name, out_dir, *, iters=1, batch=1, min_size=800):
    """Trains ``iters`` iterations and evaluates; returns a dict of what happened."""
    import train_net

    opts = [
        "MODEL.WEIGHTS", "", "DATASETS.TRAIN", f"('{train_name}',)", "DATASETS.TEST",
        f"('{val_name}',)", "SOLVER.IMS_PER_BATCH", str(batch), "SOLVER.BASE_LR", "1e-5",
        "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.CHECKPOINT_PERIOD", str(10 ** 9), "TEST.EVAL_PERIOD", "0",
        "INPUT.MIN_SIZE_TRAIN", f"({min_size},)", "INPUT.MIN_SIZE_TEST", str(min_size),
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", out_dir,
        "TEST.LVIS_EVAL.WRITE_RESULTS_JSON", "True",  # the detections, counted below
    ]
    args = argparse.Namespace(config_file=config_file, opts=opts, eval_only=False, resume=False)
    cfg = train_net.setup(args)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203 and cfg.TEST.DETECTIONS_PER_IMAGE == MAX_DETECTIONS
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == SCORE_THRESH
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    calibrate_frozen_bn(trainer.model, next(iter(train_net.Trainer.build_train_loader(cfg))))
    t0 = time.perf_counter()
    trainer.train()  # ends with the evaluation (DefaultTrainer's EvalHook)
    total = time.perf_counter() - t0
    latest = trainer.storage.latest()
    losses = {k: float(v[0]) for k, v in latest.items() if k.startswith("loss_")}
    with open(os.path.join(out_dir, "inference", val_name, RESULTS_JSON)) as f:
        detections = json.load(f)
    per_image_count = collections.Counter(d["image_id"] for d in detections)
    per_image = [per_image_count[r["image_id"]] for r in DatasetCatalog.get(val_name)]
    scores = [d["score"] for d in detections]
    results = getattr(trainer, "_last_eval_results", None) or {}
    return {
        "config": os.path.relpath(config_file, ROOT),
        "head": type(trainer.model.roi_heads.box_predictor).__name__,
        "losses": losses,
        "total_s": total,
        "detections_per_image": per_image,
        "min_score": min(scores) if scores else None,
        "results": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=os.path.join(ROOT, "configs/LVISv1/*.yaml"))
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--min-size", type=int, default=800)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "lvis_shaped_run"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_name, val_name = register_shaped(args.data)
    rows, failed = [], []
    for config in sorted(glob.glob(args.configs)):
        out = tempfile.mkdtemp(prefix="lvis_run_")
        try:
            row = run_config(config, train_name, val_name, out, iters=args.iters,
                             batch=args.batch, min_size=args.min_size)
        except Exception as e:  # keep going, name the failures at the end
            failed.append((config, repr(e)))
            print(f"FAILED {config}: {e!r}", flush=True)
            continue
        finally:
            shutil.rmtree(out, ignore_errors=True)
        rows.append(row)
        print(
            f"{row['config']}: {row['head']}, {row['total_s']:.0f} s train+eval, detections/image {row['detections_per_image']}, min score "
            f"{row['min_score']}, losses {{{', '.join(f'{k}: {v:.3g}' for k, v in row['losses'].items())}}}",
            flush=True,
        )
    print(f"\n{len(rows)} config(s) ran, {len(failed)} failed")
    for config, err in failed:
        print(f"  {config}: {err}")
    return rows, failed


if __name__ == "__main__":
    rows, failed = main()
    sys.exit(1 if failed else 0)
