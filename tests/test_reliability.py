"""
Reliability of training (projects_lda.engine, projects_lda.data.loader, projects_lda.data.mapper):

* crash and resume: a train_net.py run killed with SIGKILL after its first checkpoint, resumed
  with --resume, ends with the same weights (bit for bit), alpha window, class frequencies and
  metrics as an uninterrupted run;
* checkpoints: loaded with weights_only=True (unsafe pickles refused even when torch's default
  is overridden), truncated / corrupt / empty / missing files named in the error, a baseline
  Mask R-CNN loaded into LDA with a report of the new and unused weights (in log.txt), atomic
  writes, and an existing model_final.pth left byte-identical by failing runs;
* bad data: an unreadable image, degenerate boxes, empty polygons and images left without
  annotations are skipped or dropped with warnings and counters, never NaN losses; a
  non-finite loss stops the run naming the iteration and the term;
* determinism: the same seed gives the same first-iteration losses, whatever the number of
  data-loader workers. (The embedded dataset's byte-for-byte determinism is tested in
  test_embedded_dataset.py::test_same_seed_gives_identical_files.)
"""
import copy
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import torch
from torch import nn

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from detectron2.utils.events import EventStorage, get_event_storage

from projects_lda import LDAFastRCNNOutputLayers
from projects_lda.engine.checkpoint import CheckpointError, SafeCheckpointer, load_checkpoint_file
from projects_lda.engine import NonFiniteLossError
from projects_lda.data.mapper import ImageReadError, SafeDatasetMapper

from conftest import BASELINE_CONFIG, LDA_CONFIG, ROOT, tiny_opts

import train_net  # noqa: E402

# Measured difference between the final weights of a resumed and an uninterrupted run: none.
RESUME_TOLERANCE = 0.0
TIME_KEYS = {"time", "data_time", "eta_seconds", "rank_data_time"}  # rank_data_time: main


def _rows(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _last_rows(out_dir):
    """The last row written for each iteration (a resumed run rewrites some)."""
    return {(r["iteration"], "total_loss" in r): r for r in _rows(out_dir)}


def _without_time(row):
    return {k: v for k, v in row.items() if k not in TIME_KEYS}


# ============================================================================ crash and resume
def _train_cmd(out, *opts, resume=False):
    return [
        sys.executable, str(ROOT / "train_net.py"), "--config-file", str(LDA_CONFIG),
        *(["--resume"] if resume else []),
        *tiny_opts(
            out, "SOLVER.MAX_ITER", "10", "SOLVER.CHECKPOINT_PERIOD", "4",
            "MODEL.LDA.WINDOW", "3", "DATALOADER.NUM_WORKERS", "1", *opts,
        ),
    ]


def _run(cmd, env, log_path, timeout=300):
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              timeout=timeout)
    assert proc.returncode == 0, open(log_path).read()[-3000:]
    return open(log_path).read()


def test_resume_after_sigkill_matches_uninterrupted_run(tiny_dataset, tmp_path):
    env = tiny_dataset["env"]
    full, crashed = tmp_path / "full", tmp_path / "crashed"
    _run(_train_cmd(full), env, tmp_path / "full.log")

    # the same run, killed (SIGKILL) as soon as its first checkpoint is complete
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(_train_cmd(crashed), env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        tag, deadline = crashed / "last_checkpoint", time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if tag.exists() and tag.read_text().startswith("model_0"):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, open(tmp_path / "killed.log").read()[-3000:]
    assert not (crashed / "model_final.pth").exists()

    log = _run(_train_cmd(crashed, resume=True), env, tmp_path / "resumed.log")
    start = int(re.search(r"Starting training from iteration (\d+)", log).group(1))
    assert start in (4, 8), start  # resumed after model_0000003.pth or model_0000007.pth

    a = torch.load(full / "model_final.pth", map_location="cpu", weights_only=True)
    b = torch.load(crashed / "model_final.pth", map_location="cpu", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    diff = max((a["model"][k].double() - b["model"][k].double()).abs().max().item()
               for k in a["model"] if a["model"][k].numel())
    assert diff <= RESUME_TOLERANCE, diff
    prefix = "roi_heads.box_predictor."
    for k in ("accuracy_window.counts", "accuracy_window.position", "class_freq",
              "class_freq_ready"):
        assert torch.equal(a["model"][prefix + k], b["model"][prefix + k]), k
    assert int(b["model"][prefix + "accuracy_window.position"]) == 10
    assert bool(b["model"][prefix + "class_freq_ready"])
    # the optimizer (momentum) and the LR schedule travel in the checkpoint
    opt_a, opt_b = a["trainer"]["_trainer"]["optimizer"], b["trainer"]["_trainer"]["optimizer"]
    assert opt_a["state"] and opt_a["state"].keys() == opt_b["state"].keys()
    for i in opt_a["state"]:
        assert torch.equal(opt_a["state"][i]["momentum_buffer"],
                           opt_b["state"][i]["momentum_buffer"])
    assert a["trainer"]["hooks"]["LRScheduler"] == b["trainer"]["hooks"]["LRScheduler"]

    # the same final metrics: training (smoothed over the last 20 iterations) and evaluation
    rows_a, rows_b = _last_rows(full), _last_rows(crashed)
    assert (9, True) in rows_a and (10, False) in rows_a
    for key in [(9, True), (10, False)]:
        assert _without_time(rows_a[key]) == _without_time(rows_b[key]), key


# ============================================================================ checkpoints
class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.fixture
def small_checkpoint(tmp_path):
    model = nn.Linear(3, 2)
    SafeCheckpointer(model, str(tmp_path)).save("small", iteration=3)
    return tmp_path / "small.pth", model


def test_torch_load_is_called_with_weights_only(small_checkpoint, monkeypatch):
    path, _ = small_checkpoint
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert set(load_checkpoint_file(str(path))) == {"model", "iteration"}
    assert calls and all(c.get("weights_only") is True for c in calls)


def test_unsafe_pickle_refused_even_when_torch_default_is_overridden(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        SafeCheckpointer(nn.Linear(3, 2)).load(str(path))


def test_truncated_corrupt_empty_missing_checkpoints_are_named(small_checkpoint, tmp_path):
    path, model = small_checkpoint
    data = path.read_bytes()
    cases = {
        "truncated.pth": data[: len(data) // 2],
        "corrupt.pth": b"\x00garbage" * 100,
        "empty.pth": b"",
    }
    for name, content in cases.items():
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(str(bad))):
            SafeCheckpointer(model).load(str(bad))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint_file(str(tmp_path / "truncated.pth"))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        SafeCheckpointer(model).load(str(tmp_path / "absent.pth"))


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, caplog):
    model = nn.Linear(3, 2)
    checkpointer = SafeCheckpointer(model, str(tmp_path))
    for i, name in enumerate(["model_0000003", "model_0000007", "model_0000011"]):
        with torch.no_grad():
            model.weight.fill_(i)
        checkpointer.save(name, iteration=int(name[-7:]))
        os.utime(tmp_path / f"{name}.pth", (1000 + i, 1000 + i))  # written in this order
    last = tmp_path / "model_0000011.pth"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # the run died while the disk filled up
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000011.pth"

    with caplog.at_level("WARNING"):
        loaded = SafeCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert loaded["iteration"] == 7 and model.weight.detach()[0, 0].item() == 1.0
    assert re.search(r"Cannot resume from \S*model_0000011\.pth .*truncated or corrupt.*"
                     r"resuming from \S*model_0000007\.pth", caplog.text), caplog.text
    assert last.read_bytes() == data[: len(data) // 2]  # the damaged file is kept

    # none intact: an error naming every file
    for name in ["model_0000003.pth", "model_0000007.pth"]:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"no checkpoint there can be loaded.*0000011.*"
                       r"0000007.*0000003"):
        SafeCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)


def test_resumed_smoothed_metrics_continue_the_interrupted_ones(tiny_dataset):
    """What the metric history in the checkpoint is for: metrics.json holds medians over 20
    iterations; without the history, the first values logged after a resume would be medians of
    the few iterations since the resume."""
    from projects_lda.engine import RunStateHook

    values = [float(v) for v in [5, 1, 4, 2, 3, 9, 8, 7, 6, 0]]
    with EventStorage(0) as before:
        for i, v in enumerate(values):
            before.iter = i
            before.put_scalar("loss_x", v)
        hook = RunStateHook(seed=0)
        hook.trainer = types.SimpleNamespace(storage=before, iter=10)
        state = hook.state_dict()
        before.iter = 10
        before.put_scalar("loss_x", 100.0)
        uninterrupted = before.history("loss_x").median(20)

    resumed_hook = RunStateHook(seed=0)
    resumed_hook.load_state_dict(state)
    with EventStorage(10) as after:
        resumed_hook.trainer = types.SimpleNamespace(storage=after, iter=10)
        resumed_hook.before_train()
        after.put_scalar("loss_x", 100.0)
        assert after.history("loss_x").median(20) == uninterrupted == 5.0
    with EventStorage(10) as without_history:
        without_history.put_scalar("loss_x", 100.0)
        assert without_history.history("loss_x").median(20) == 100.0  # what would be logged


def test_pkl_weights_load_numpy_only(tmp_path):
    model = nn.Linear(3, 2)
    weights = {k: v.numpy().copy() + 1 for k, v in model.state_dict().items()}
    good = tmp_path / "good.pkl"
    with open(good, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test"}, f, protocol=2)
    SafeCheckpointer(model).load(str(good))
    assert np.allclose(model.weight.detach().numpy(), weights["weight"])
    bad = tmp_path / "bad.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"model": weights, "x": _Evil()}, f)
    with pytest.raises(CheckpointError, match=re.escape(str(bad))):
        SafeCheckpointer(model).load(str(bad))


def test_baseline_checkpoint_loads_into_lda_with_a_report(train_args, tmp_path):
    base_cfg = train_net.setup(train_args(tmp_path / "base", config=BASELINE_CONFIG))
    baseline = train_net.Trainer.build_model(base_cfg)
    SafeCheckpointer(baseline, str(tmp_path / "base")).save("baseline")

    out = tmp_path / "lda"
    cfg = train_net.setup(
        train_args(out, "MODEL.WEIGHTS", str(tmp_path / "base" / "baseline.pth"))
    )
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    report = trainer.checkpointer.last_load_report
    p = "roi_heads.box_predictor."
    for k in ("fgbg_score.weight", "unbalanced_score.weight", "balanced_score.weight",
              "projection.weight", "class_freq", "accuracy_window.counts"):
        assert p + k in report.new, k
    assert set(report.unused) == {p + "cls_score.weight", p + "cls_score.bias"}
    assert "backbone.bottom_up.stem.conv1.weight" in report.loaded
    assert p + "bbox_pred.weight" in report.loaded
    lda_state, base_state = trainer.model.state_dict(), baseline.state_dict()
    assert torch.equal(lda_state[p + "bbox_pred.weight"], base_state[p + "bbox_pred.weight"])
    # the class frequencies are not in the baseline: they are computed at the first step
    assert not bool(lda_state[p + "class_freq_ready"])

    log = (out / "log.txt").read_text()
    assert "not found in the checkpoint" in log and "fgbg_score" in log
    assert "not used by the model" in log and "cls_score" in log
    assert re.search(r"Loaded \d+ of \d+ model tensors from .*baseline\.pth; new \(not in the "
                     r"checkpoint, initialised from scratch\): \d+", log)


def test_checkpoint_writes_are_atomic(small_checkpoint, monkeypatch):
    path, model = small_checkpoint
    folder = path.parent
    checkpointer = SafeCheckpointer(model, str(folder))
    checkpointer.save("model_final")
    before = (folder / "model_final.pth").read_bytes()
    tag_before = (folder / "last_checkpoint").read_text()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with torch.no_grad():
        model.weight.add_(1)
    with pytest.raises(OSError, match="No space"):
        checkpointer.save("model_final")
    assert (folder / "model_final.pth").read_bytes() == before
    assert (folder / "last_checkpoint").read_text() == tag_before
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def _existing_final(out):
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.arange(5.0)}}, out / "model_final.pth")
    return (out / "model_final.pth").read_bytes()


def test_non_finite_loss_names_iteration_and_term_and_keeps_model_final(
    train_args, tmp_path, monkeypatch
):
    out = tmp_path / "nan"
    before = _existing_final(out)
    original = LDAFastRCNNOutputLayers.losses

    def losses(self, predictions, proposals):
        out = original(self, predictions, proposals)
        if get_event_storage().iter == 1:  # the last iteration
            out["loss_inter"] = out["loss_inter"] * float("nan")
        return out

    monkeypatch.setattr(LDAFastRCNNOutputLayers, "losses", losses)
    with pytest.raises(FloatingPointError, match=r"iteration 1: loss_inter \(loss_inter=nan"):
        train_net.main(train_args(out, "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()"))
    assert (out / "model_final.pth").read_bytes() == before
    assert issubclass(NonFiniteLossError, FloatingPointError)


# ============================================================================ bad data
def _register(name, dicts):
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: copy.deepcopy(dicts))
    classes = MetadataCatalog.get("tiny_embedded_train").thing_classes
    MetadataCatalog.get(name).set(thing_classes=classes)


@pytest.fixture
def bad_dataset(tiny_dataset, tmp_path):
    """
    Six training images: one unreadable, one with a degenerate box, one with an empty polygon,
    one whose annotations are all unusable, two untouched; plus one without annotations.
    """
    dicts = copy.deepcopy(DatasetCatalog.get("tiny_embedded_train")[:7])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    dicts[0]["file_name"] = str(corrupt)
    dicts[1]["annotations"][0]["bbox"] = [10.0, 10.0, 0.0, 12.0]  # zero width
    dicts[2]["annotations"][0]["segmentation"] = []
    for ann in dicts[3]["annotations"]:
        ann["bbox"] = [5.0, 5.0, 7.0, 0.0]  # zero height
    dicts[6]["annotations"] = []
    _register("tiny_bad_train", dicts)
    return dicts


def test_bad_training_data_is_skipped_and_counted(bad_dataset, train_args, tmp_path):
    out = tmp_path / "bad"
    train_net.main(train_args(
        out, "SOLVER.MAX_ITER", "4", "DATASETS.TRAIN", "('tiny_bad_train',)",
        "DATASETS.TEST", "()", "DATALOADER.SAMPLER_TRAIN", "TrainingSampler",
    ))
    rows = [r for r in _rows(out) if "total_loss" in r]
    assert rows
    for row in rows:
        for k, v in row.items():
            if k.startswith("loss_") or k == "total_loss":
                assert math.isfinite(v), (k, row)
    last = rows[-1]
    assert last["data/skipped_images"] >= 1
    assert last["data/dropped_annotations"] >= 2 + len(bad_dataset[3]["annotations"])
    assert last["data/images_without_instances"] >= 1
    log = (out / "log.txt").read_text()
    assert re.search(r"Skipping a training image \(cannot read image .*corrupt\.png", log)
    assert "degenerate box [10.0, 10.0, 0.0, 12.0]" in log
    assert "empty or invalid polygon" in log
    assert "Removed 1 images with no usable annotations" in log


def test_unreadable_dataset_stops_with_a_clear_error_and_keeps_model_final(
    tiny_dataset, train_args, tmp_path
):
    dicts = copy.deepcopy(DatasetCatalog.get("tiny_embedded_train")[:4])
    for i, d in enumerate(dicts):
        d["file_name"] = str(tmp_path / f"gone{i}.png")  # deleted after registration
    _register("tiny_unreadable_train", dicts)
    out = tmp_path / "unreadable"
    before = _existing_final(out)
    with pytest.raises(ImageReadError, match=r"10 training images in a row could not be read"):
        train_net.main(train_args(
            out, "SOLVER.MAX_ITER", "2", "DATASETS.TRAIN", "('tiny_unreadable_train',)",
            "DATASETS.TEST", "()",
        ))
    assert (out / "model_final.pth").read_bytes() == before


def test_unreadable_evaluation_image_is_an_error_naming_it(bad_dataset, train_args, tmp_path):
    _register("tiny_bad_val", bad_dataset[:2])
    cfg = train_net.setup(train_args(tmp_path / "ev"))
    loader = train_net.Trainer.build_test_loader(cfg, "tiny_bad_val")
    with pytest.raises(ImageReadError, match=r"corrupt\.png"):
        for _ in loader:
            pass


@pytest.fixture(scope="module")
def mapper():
    from projects_lda import get_project_cfg

    cfg = get_project_cfg()  # the configs use keys of add_training_config too
    cfg.merge_from_file(str(LDA_CONFIG))
    return SafeDatasetMapper(cfg, is_train=True)


def _record(tiny, anns):
    d = copy.deepcopy(DatasetCatalog.get("tiny_embedded_train")[0])
    d["annotations"] = anns
    return d


def test_mapper_drops_unusable_annotations(tiny_dataset, mapper):
    good = copy.deepcopy(DatasetCatalog.get("tiny_embedded_train")[0]["annotations"][0])
    poly = good["segmentation"][0]
    anns = [
        good,
        dict(good, bbox=[1.0, 2.0, 0.0, 5.0]),  # zero width
        dict(good, bbox=[1.0, 2.0, float("nan"), 5.0]),  # not finite
        dict(good, segmentation=[]),  # no polygon
        dict(good, segmentation=[[1.0, 2.0, 3.0, 4.0]]),  # 2 points
        dict(good, segmentation=[poly, [1.0, 2.0]]),  # one valid polygon kept
        dict(good, bbox=[3.0, 3.0, 3.0, 5.0], bbox_mode=BoxMode.XYXY_ABS),  # x1 == x0
    ]
    mapper.pop_events()
    out = mapper(_record(tiny_dataset, anns))
    assert len(out["instances"]) == 2
    events = mapper.pop_events()
    assert events["dropped_annotations"] == 5
    assert events["dropped_polygons"] == 1
    assert mapper.pop_events() == {}
    # an image whose annotations are all dropped becomes an image with no object
    out = mapper(_record(tiny_dataset, anns[1:5]))
    assert len(out["instances"]) == 0


# ============================================================================ determinism
def test_same_seed_gives_same_first_iteration_losses(train_args, tmp_path):
    rows = []
    for i, workers in enumerate(["0", "1"]):
        out = tmp_path / f"run{i}"
        train_net.main(train_args(out, "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()",
                                  "DATALOADER.NUM_WORKERS", workers))
        (row,) = [r for r in _rows(out) if "total_loss" in r]
        rows.append(_without_time(row))
    assert rows[0]["iteration"] == 0 and math.isfinite(rows[0]["total_loss"])
    # two runs with the same seed, the second with a data-loader worker process
    assert rows[0] == rows[1]
    other = tmp_path / "seed1"
    train_net.main(train_args(other, "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()", "SEED", "1"))
    (row,) = [r for r in _rows(other) if "total_loss" in r]
    assert _without_time(row) != rows[0]
