"""
End to end through train_net.py on a tiny embedded dataset: a few LDA iterations with finite
losses and alpha in the metrics file, --eval-only from the checkpoint (LVIS AP table and
Visualizer PNGs) without the training set, and --resume.
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog

from projects_lda.data import generate_embedded_lvis, register_lvis_format

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train_net  # noqa: E402

CONFIG = ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_lvis")
    paths = generate_embedded_lvis(
        str(root), seed=3, num_classes=6, num_train_images=24, num_val_images=6
    )
    for split in ("train", "val"):
        name = f"tiny_embedded_{split}"
        if name not in DatasetCatalog.list():
            register_lvis_format(name, paths[f"{split}_json"], str(root) + "/")
    return root


def _args(out_dir, *opts, eval_only=False, resume=False):
    return argparse.Namespace(
        config_file=str(CONFIG),
        eval_only=eval_only,
        resume=resume,
        num_gpus=1,
        opts=[
            "DATASETS.TRAIN", "('tiny_embedded_train',)",
            "DATASETS.TEST", "('tiny_embedded_val',)",
            "MODEL.ROI_HEADS.NUM_CLASSES", "6",
            "SOLVER.IMS_PER_BATCH", "2",
            "SOLVER.WARMUP_ITERS", "2",
            "SOLVER.CHECKPOINT_PERIOD", "2",
            "DATALOADER.NUM_WORKERS", "0",
            "TEST.DETECTIONS_PER_IMAGE", "20",
            "OUTPUT_DIR", str(out_dir),
            *opts,
        ],
    )


def _metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_train_eval_resume(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    train_net.main(_args(out, "SOLVER.MAX_ITER", "4", "MODEL.LDA.WINDOW", "3"))
    rows = [r for r in _metrics(out) if "total_loss" in r]
    assert rows, "no training metrics written"
    lda_terms = ["loss_fgbg", "loss_cls_unbalanced", "loss_cls_balanced", "loss_intra",
                 "loss_inter", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"]
    for row in rows:
        for k in lda_terms + ["lda/alpha", "lda/acc_unbalanced", "lda/acc_balanced"]:
            assert k in row and math.isfinite(row[k]), (k, row)
    assert (out / "model_final.pth").is_file()
    assert len(list((out / "vis").glob("*.png"))) == 4

    # the checkpoint carries the class frequencies and the alpha window
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    prefix = "roi_heads.box_predictor."
    assert bool(state[prefix + "class_freq_ready"])
    assert state[prefix + "class_freq"].shape == (6,)
    assert int(state[prefix + "accuracy_window.position"]) == 4

    # --eval-only needs neither the training set nor a recomputation of the frequencies
    if "tiny_missing_train" not in DatasetCatalog.list():
        register_lvis_format("tiny_missing_train", str(tmp_path / "absent.json"), str(tmp_path))
    res = train_net.main(
        _args(
            out, "MODEL.WEIGHTS", str(out / "model_final.pth"),
            "DATASETS.TRAIN", "('tiny_missing_train',)", eval_only=True,
        )
    )
    for task in ("bbox", "segm"):
        for k in ("AP", "APr", "APc", "APf"):
            assert k in res[task]

    # --resume continues from the last checkpoint up to the new MAX_ITER
    train_net.main(_args(out, "SOLVER.MAX_ITER", "6", "MODEL.LDA.WINDOW", "3", resume=True))
    iters = [r["iteration"] for r in _metrics(out) if "total_loss" in r]
    assert max(iters) == 5
    model = train_net.Trainer.build_model(train_net.setup(_args(out, "MODEL.LDA.WINDOW", "3")))
    DetectionCheckpointer(model).load(str(out / "model_final.pth"))
    assert int(model.roi_heads.box_predictor.accuracy_window.position) == 6
