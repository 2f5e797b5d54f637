"""
End to end through train_net.py on a tiny embedded dataset: a few LDA iterations with finite
losses and alpha in the metrics file (the ``trained_lda`` run of conftest.py, shared with other
tests), --eval-only from its checkpoint (LVIS AP table) without the training set, and --resume
(on a copy of the run).
"""
import argparse
import json
import math
import os

import pytest
import torch

from detectron2.data import DatasetCatalog

from projects_lda.engine.checkpoint import SafeCheckpointer
from projects_lda.deploy.commands import demo, inference_config
from projects_lda.data import register_lvis_format

import train_net  # noqa: E402  (the repository root is put on sys.path by conftest.py)
from conftest import LDA_CONFIG, TINY_CLASSES, TRAINED_LDA_ITERS, copy_run


def _metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_training_writes_finite_lda_terms_alpha_and_drawings(trained_lda):
    out = trained_lda["dir"]
    rows = [r for r in _metrics(out) if "total_loss" in r]
    assert rows, "no training metrics written"
    lda_terms = ["loss_fgbg", "loss_cls_unbalanced", "loss_cls_balanced", "loss_intra",
                 "loss_inter", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc"]
    for row in rows:
        for k in lda_terms + ["lda/alpha", "lda/acc_unbalanced", "lda/acc_balanced"]:
            assert k in row and math.isfinite(row[k]), (k, row)
    assert trained_lda["weights"].is_file()
    assert len(list((out / "vis").glob("*.png"))) == 4

    # the checkpoint carries the class frequencies and the alpha window
    state = torch.load(trained_lda["weights"], map_location="cpu", weights_only=True)["model"]
    prefix = "roi_heads.box_predictor."
    assert bool(state[prefix + "class_freq_ready"])
    assert state[prefix + "class_freq"].shape == (6,)
    assert int(state[prefix + "accuracy_window.position"]) == TRAINED_LDA_ITERS == 4


def test_eval_only_reads_neither_the_training_set_nor_its_frequencies(
    trained_lda, train_args, tmp_path
):
    if "tiny_missing_train" not in DatasetCatalog.list():
        register_lvis_format("tiny_missing_train", str(tmp_path / "absent.json"), str(tmp_path))
    res = train_net.main(
        train_args(
            tmp_path / "eval", "MODEL.WEIGHTS", str(trained_lda["weights"]),
            "DATASETS.TRAIN", "('tiny_missing_train',)", eval_only=True,
        )
    )
    for task in ("bbox", "segm"):
        for k in ("AP", "APr", "APc", "APf"):
            assert k in res[task]


def test_resume_continues_from_the_last_checkpoint_to_the_new_max_iter(
    trained_lda, train_args, tmp_path
):
    out = copy_run(trained_lda, tmp_path / "run")
    n = TRAINED_LDA_ITERS
    train_net.main(train_args(out, "SOLVER.MAX_ITER", str(n + 2), "MODEL.LDA.WINDOW", "3",
                              "DATASETS.TEST", "()", resume=True))
    iters = [r["iteration"] for r in _metrics(out) if "total_loss" in r]
    assert max(iters) == n + 1 == 5
    model = train_net.Trainer.build_model(train_net.setup(train_args(out, "MODEL.LDA.WINDOW", "3")))
    SafeCheckpointer(model).load(str(out / "model_final.pth"))
    assert int(model.roi_heads.box_predictor.accuracy_window.position) == n + 2


def test_demo_draws_a_dataset_and_reads_the_config_like_train_net(tiny_dataset, tmp_path):
    opts = ["DATASETS.TEST", "('tiny_embedded_val',)", "MODEL.ROI_HEADS.NUM_CLASSES",
            str(TINY_CLASSES), "TEST.DETECTIONS_PER_IMAGE", "5"]
    cfg = train_net.setup(argparse.Namespace(config_file=str(LDA_CONFIG), opts=opts + [
        "OUTPUT_DIR", str(tmp_path / "w")], eval_only=True))
    weights = tmp_path / "w" / "random.pth"
    SafeCheckpointer(train_net.Trainer.build_model(cfg), str(tmp_path / "w")).save("random")
    out = tmp_path / "vis"
    cfg = inference_config(str(LDA_CONFIG), [*opts, "MODEL.WEIGHTS", str(weights)], 0.3)
    written = demo(cfg, dataset="tiny_embedded_val", num_images=2, output=str(out),
                   progress=False).written
    assert sorted(written) == sorted(map(str, out.glob("*.png"))) and len(written) == 2
    # with a results file, its image ids are the dataset's own
    results = tmp_path / "results.json"
    every = inference_config(str(LDA_CONFIG), [*opts, "MODEL.WEIGHTS", str(weights)], 0.0)
    demo(every, dataset="tiny_embedded_val", num_images=2, json_file=str(results),
         progress=False)
    ids = {d["image_id"] for d in DatasetCatalog.get("tiny_embedded_val")[:2]}
    assert {r["image_id"] for r in json.loads(results.read_text())} == ids
    with pytest.raises(ValueError, match="--dataset tiny_nope: no such registered dataset"):
        demo(cfg, dataset="tiny_nope", output=str(out), progress=False)
    # a config error is named as train_net names it
    with pytest.raises(KeyError, match="command-line options: .*NO_SUCH_KEY"):
        inference_config(str(LDA_CONFIG), ["MODEL.NO_SUCH_KEY", "1"])
