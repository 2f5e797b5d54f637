"""Every config is named after what it holds, loads and builds; config mistakes name the file
and key."""
import argparse
import glob
import inspect
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model

from projects_lda import LDAFastRCNNOutputLayers, LDAROIHeads, get_project_cfg
from projects_lda.modeling.peers import (
    EQLv2FastRCNNOutputLayers,
    FedLossFastRCNNOutputLayers,
    SeesawFastRCNNOutputLayers,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train_net  # noqa: E402

CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(str(ROOT / "configs" / "**" / "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)


def load(path, *opts):
    cfg = get_project_cfg()
    cfg.merge_from_file(str(ROOT / path))
    cfg.merge_from_list(list(opts))
    return cfg


# A leaf config is named MODEL_BACKBONE_SCHEDULE_DATASET: [METHOD_]mask_rcnn, a ResNet(-X) FPN
# backbone, a schedule (Nep, or cpu) and the dataset, which is its folder's name in lower case.
LEAF_NAME = re.compile(
    r"(?:(?P<method>[a-z0-9_]+)_)?mask_rcnn_(?P<backbone>R_\d+|X_\d+_\d+x\d+d)_FPN_"
    r"(?P<schedule>\d+ep|cpu)_(?P<dataset>[a-z0-9]+)\.yaml"
)
LVIS_TRAIN_IMAGES = 100170  # LVIS v1 train


def _bases(path):
    """The files a config reaches through its _BASE_ chain."""
    out = []
    while True:
        text = (ROOT / path).read_text()
        m = re.search(r'^_BASE_:\s*"?([^"\n]+)"?', text, re.M)
        if not m:
            return out
        path = os.path.relpath(os.path.normpath(ROOT / os.path.dirname(path) / m.group(1)), ROOT)
        out.append(path)


@pytest.mark.parametrize("path", CONFIGS)
def test_leaf_config_is_named_model_backbone_schedule_dataset(path):
    m = LEAF_NAME.fullmatch(os.path.basename(path))
    assert m, f"{path}: not [METHOD_]mask_rcnn_BACKBONE_FPN_SCHEDULE_DATASET.yaml"
    assert m["dataset"] == os.path.basename(os.path.dirname(path)).lower(), path
    for base in _bases(path):  # every _BASE_ it names exists
        assert (ROOT / base).is_file(), f"{path}: _BASE_ {base} not found"
    # the name says what the config holds
    cfg = load(path)
    assert cfg.MODEL.MASK_ON and "fpn" in cfg.MODEL.BACKBONE.NAME
    depth, *resnext = m["backbone"][2:].split("_")
    assert cfg.MODEL.RESNETS.DEPTH == int(depth), path
    if resnext:  # X_101_32x4d: 32 groups of width 4
        groups, width = resnext[0][:-1].split("x")
        assert (cfg.MODEL.RESNETS.NUM_GROUPS, cfg.MODEL.RESNETS.WIDTH_PER_GROUP) == (
            int(groups), int(width)), path
    else:
        assert cfg.MODEL.RESNETS.NUM_GROUPS == 1, path
    if m["schedule"].endswith("ep"):  # epochs of LVIS v1 train
        epochs = int(m["schedule"][:-2])
        assert cfg.SOLVER.MAX_ITER == round(epochs * LVIS_TRAIN_IMAGES / cfg.SOLVER.IMS_PER_BATCH)


def test_every_config_file_is_a_leaf_config_or_one_of_their_bases():
    every_yaml = {
        os.path.relpath(p, ROOT)
        for p in glob.glob(str(ROOT / "configs" / "**" / "*.yaml"), recursive=True)
    }
    loaded = set(CONFIGS).union(*(_bases(c) for c in CONFIGS))
    assert CONFIGS and every_yaml == loaded  # no config file that no test loads


def _own_keyword_defaults(cls):
    params = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "class_freq"
    }


@pytest.mark.parametrize(
    "cls",
    [LDAFastRCNNOutputLayers, FedLossFastRCNNOutputLayers, EQLv2FastRCNNOutputLayers,
     SeesawFastRCNNOutputLayers],
    ids=lambda c: c.__name__,
)
def test_constructor_defaults_equal_config_defaults(cls):
    defaults = _own_keyword_defaults(cls)
    assert defaults and all(d is not inspect.Parameter.empty for d in defaults.values())
    from_cfg = cls.from_config(get_project_cfg(), ShapeSpec(channels=8))
    for name, default in defaults.items():
        assert from_cfg[name] == default, (cls.__name__, name, default, from_cfg[name])


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds(path):
    cfg = load(path, "MODEL.DEVICE", "cpu")
    model = build_model(cfg)
    heads = model.roi_heads
    is_lda = os.path.basename(path).startswith("lda_")
    assert isinstance(heads, LDAROIHeads) == is_lda
    assert isinstance(heads.box_predictor, LDAFastRCNNOutputLayers) == is_lda
    assert heads.box_predictor.num_classes == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    assert model.roi_heads.mask_on
    if is_lda:  # the predictor holds no (C+1)-way classifier, and the paper's LVIS defaults
        assert not hasattr(heads.box_predictor, "cls_score")
        assert cfg.MODEL.LDA.GAMMA == 1.5 and cfg.MODEL.LDA.LAMBDA == 0.1
        assert cfg.MODEL.LDA.MARGIN == 1.0
        # 5, not the paper's 1 (docs/design.md), but in a factor study's config, which names its
        # factor (lda_factor1_...: 1)
        factor = re.match(r"lda_factor(\d+)_", os.path.basename(path))
        assert cfg.MODEL.LDA.BALANCED_LOSS_FACTOR == (float(factor[1]) if factor else 5.0), path


@pytest.mark.parametrize("epochs", [12, 24, 36])
def test_lvis_schedules_follow_the_paper(epochs):
    cfg = load(f"configs/LVISv1/lda_mask_rcnn_R_50_FPN_{epochs}ep_lvisv1.yaml")
    iters_per_epoch = 100170 / cfg.SOLVER.IMS_PER_BATCH
    drops = {12: (8, 11), 24: (16, 22), 36: (27, 33)}[epochs]
    assert cfg.SOLVER.MAX_ITER == round(epochs * iters_per_epoch)
    assert cfg.SOLVER.STEPS == tuple(round(e * iters_per_epoch) for e in drops)
    assert cfg.SOLVER.IMS_PER_BATCH == 8 and cfg.SOLVER.BASE_LR == 0.01
    assert cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler"
    assert cfg.DATALOADER.REPEAT_THRESHOLD == 0.001
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 300
    assert cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.0001
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1203


def _args(config_file, *opts):
    return argparse.Namespace(
        config_file=str(config_file), opts=list(opts), eval_only=False, resume=False
    )


def test_unknown_config_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('_BASE_: "%s"\nMODEL:\n  LDA:\n    GAMA: 2.0\n' % (
        ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"))
    with pytest.raises(KeyError, match=r"bad\.yaml.*MODEL\.LDA\.GAMA"):
        train_net.setup(_args(bad))


def test_unknown_command_line_key_is_named(tmp_path):
    cfg = ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"
    with pytest.raises(KeyError, match="SOLVER.MAX_ITERS"):
        train_net.setup(_args(cfg, "SOLVER.MAX_ITERS", "3", "OUTPUT_DIR", str(tmp_path)))


def test_missing_local_weights_file_is_an_error(tmp_path):
    cfg = ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS.*nope.pth"):
        train_net.setup(_args(cfg, "MODEL.WEIGHTS", str(tmp_path / "nope.pth")))


def test_runs_on_cpu_without_editing_the_config(tmp_path):
    cfg = train_net.setup(
        _args(
            ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
            "OUTPUT_DIR", str(tmp_path),
        )
    )
    assert cfg.MODEL.DEVICE == ("cuda" if torch.cuda.is_available() else "cpu")
