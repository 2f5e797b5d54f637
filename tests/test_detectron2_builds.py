"""
The project on both supported detectron2 builds: the 0.6 release (patched by tools/setup.sh) and
official GitHub main. Each test here covers a place where the two differ (decided in
projects_lda/engine/compat.py); the tests marked for one build are skipped on the other with the
reason. Also: a checkpoint written before the training machinery moved to projects_lda/engine/
still resumes.
"""
import logging
import os
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from detectron2.utils.events import EventStorage

from projects_lda.engine import (
    CheckedSimpleTrainer,
    NonFiniteLossError,
    RunStateHook,
    SafeCheckpointer,
    compat,
    launcher,
)
from projects_lda.engine.defaults import check_weights

import train_net  # noqa: E402  (conftest puts the repository root on sys.path)

# Written by train_net.py at commit 06034be (before projects_lda/engine/ existed): the LDA config
# on the 6-class tiny dataset of conftest.py, MODEL.LDA.WINDOW 3, SOLVER.IMS_PER_BATCH 2,
# SOLVER.MAX_ITER 3, SOLVER.CHECKPOINT_PERIOD 2: model_0000001.pth, shrunk to 76 kB by keeping
# its trainer state whole (iteration, LR schedule, run-state hook, optimizer param groups) and
# only a few model tensors and the momentum of the optimizer's first parameter.
OLD_CHECKPOINT = Path(__file__).parent / "data" / "lda_R18_tiny_iter1_06034be.pth"

only_main = pytest.mark.skipif(
    not compat.WRITE_METRICS_TAKES_ITER,
    reason="detectron2 0.6's SimpleTrainer has no gather_metric_period / async_write_metrics",
)


# ============================================================================ checkpoints
def _resumable(out_dir, checkpoint):
    os.makedirs(out_dir, exist_ok=True)
    torch.save(checkpoint, out_dir / "model_0000001.pth")
    (out_dir / "last_checkpoint").write_text("model_0000001.pth")


def _trainer(train_args, out_dir):
    cfg = train_net.setup(train_args(out_dir, "SOLVER.MAX_ITER", "3", "MODEL.LDA.WINDOW", "3"))
    return train_net.Trainer(cfg)


def test_checkpoint_written_before_the_move_resumes(train_args, tmp_path):
    saved = torch.load(OLD_CHECKPOINT, map_location="cpu", weights_only=True)
    out = tmp_path / "out"
    _resumable(out, saved)
    trainer = _trainer(train_args, out)
    calls = []
    original = trainer._trainer.load_state_dict
    trainer._trainer.load_state_dict = lambda state: calls.append(1) or original(state)

    trainer.resume_or_load(resume=True)

    assert trainer.iter == 1 and trainer.start_iter == 2
    assert len(calls) == 1  # the optimizer state is loaded once
    report = trainer.checkpointer.last_load_report
    assert set(saved["model"]) <= set(report.loaded) and report.unused == ()
    state = trainer._trainer.model.state_dict()
    for k, v in saved["model"].items():
        assert torch.equal(state[k], v), k
    assert trainer.scheduler.state_dict()["last_epoch"] == 2
    optimizer = trainer._trainer.optimizer
    first = optimizer.param_groups[0]["params"][0]
    expected = saved["trainer"]["_trainer"]["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(optimizer.state[first]["momentum_buffer"], expected)
    (hook,) = [h for h in trainer._hooks if isinstance(h, RunStateHook)]
    assert hook.seed == saved["trainer"]["hooks"]["RunStateHook"]["seed"]
    assert hook._pending["history"] == saved["trainer"]["hooks"]["RunStateHook"]["history"]


def test_resume_from_a_checkpoint_without_optimizer_state(train_args, tmp_path, caplog):
    """detectron2 0.6's DefaultTrainer wrote no "_trainer"; main's load_state_dict needs it."""
    saved = torch.load(OLD_CHECKPOINT, map_location="cpu", weights_only=True)
    del saved["trainer"]["_trainer"]
    out = tmp_path / "out"
    _resumable(out, saved)
    trainer = _trainer(train_args, out)
    with caplog.at_level(logging.WARNING, logger="projects_lda"):
        trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    assert "no optimizer state" in caplog.text
    assert not trainer._trainer.optimizer.state  # momentum restarts from zero


def _small_weights(tmp_path):
    """A checkpoint whose keys ("weight", "bias") match the model's only by suffix."""
    path = tmp_path / "w.pth"
    torch.save({"model": {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}}, path)
    return str(path)


@pytest.mark.skipif(not compat.WEIGHTS_URL_QUERIES, reason="detectron2 0.6 reads no ?query")
def test_weights_path_with_matching_heuristics_query(tmp_path):
    weights = _small_weights(tmp_path) + "?matching_heuristics=True"
    check_weights(types.SimpleNamespace(MODEL=types.SimpleNamespace(WEIGHTS=weights)))
    model = nn.Sequential(nn.Linear(3, 2))
    checkpointer = SafeCheckpointer(model)
    checkpointer.load(weights)
    assert checkpointer.last_load_report.loaded == ("0.bias", "0.weight")
    assert torch.equal(model[0].weight, torch.ones(2, 3))
    with pytest.raises(ValueError, match="unsupported query"):
        checkpointer.load(_small_weights(tmp_path) + "?other=1")


@pytest.mark.skipif(compat.WEIGHTS_URL_QUERIES, reason="this detectron2 build reads ?queries")
def test_weights_path_query_is_named_where_unsupported(tmp_path):
    weights = _small_weights(tmp_path) + "?matching_heuristics=True"
    cfg = types.SimpleNamespace(MODEL=types.SimpleNamespace(WEIGHTS=weights))
    with pytest.raises(FileNotFoundError, match=r"w\.pth\?matching_heuristics=True.*main does"):
        check_weights(cfg)


# ============================================================================ training loop
def _checked_trainer(**kwargs):
    model = nn.Linear(2, 1)
    return CheckedSimpleTrainer(model, [], torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def _losses(a, b=2.0):
    return {"loss_a": torch.tensor(a), "loss_b": torch.tensor(b)}


def test_metrics_writer_takes_the_iteration_argument():
    """Main's SimpleTrainer passes iter=... to _write_metrics (with async_write_metrics)."""
    trainer = _checked_trainer()
    with EventStorage(5) as storage:
        trainer.iter = 5
        trainer._write_metrics(_losses(1.0), 0.25, iter=5)
        assert storage.history("total_loss").values() == [(3.0, 5)]
        assert storage.history("loss_a").latest() == 1.0
        with pytest.raises(NonFiniteLossError, match=r"iteration 5: loss_a \(loss_a=nan\)"):
            trainer._write_metrics(_losses(float("nan")), 0.25, iter=5)


@only_main
def test_gather_metric_period_is_followed_and_the_loss_check_is_not_skipped():
    trainer = _checked_trainer(gather_metric_period=2)
    with EventStorage(0) as storage:
        trainer._write_metrics(_losses(1.0), 0.25, iter=0)
        assert "total_loss" not in storage.histories()  # not a gathering iteration
        with pytest.raises(NonFiniteLossError, match="iteration 0: loss_b"):
            trainer._write_metrics(_losses(1.0, float("inf")), 0.25, iter=0)
        trainer._write_metrics(_losses(1.0), 0.25, iter=1)
        assert storage.history("total_loss").values() == [(3.0, 1)]


@only_main
def test_async_metrics_are_refused():
    """In a thread, the loss check would come after the optimizer step and its error be lost."""
    with pytest.raises(ValueError, match="async_write_metrics is not supported"):
        _checked_trainer(async_write_metrics=True)


# ============================================================================ launching
def test_cpu_processes_started_by_detectron2s_launch_where_it_can(monkeypatch):
    used = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(launcher, "d2_launch", lambda *a, **k: used.append("detectron2"))
    monkeypatch.setattr(launcher.mp, "spawn", lambda *a, **k: used.append("projects_lda"))
    launcher.launch(print, 2, dist_url="auto")
    assert used == ["detectron2" if compat.LAUNCH_SUPPORTS_CPU else "projects_lda"]
    used.clear()
    launcher.launch(print, 1)  # one process: always detectron2's
    assert used == ["detectron2"]


def test_detectron2_export_imports_its_torchscript_pieces_on_both_builds():
    """0.6's detectron2/export/__init__.py imports caffe2, which current torch lacks; main's
    guards it, and so does the setup's patch of 0.6: on both builds a plain import."""
    import importlib
    import sys

    export = compat.detectron2_export()
    assert sys.modules["detectron2.export"] is export
    flatten = importlib.import_module("detectron2.export.flatten")
    torchscript = importlib.import_module("detectron2.export.torchscript")
    assert export.TracingAdapter is flatten.TracingAdapter
    assert export.dump_torchscript_IR is torchscript.dump_torchscript_IR
    assert export.scripting_with_instances is torchscript.scripting_with_instances
    assert compat.detectron2_export() is export  # a second call finds the same module
