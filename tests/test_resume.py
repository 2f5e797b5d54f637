"""
Which checkpoint --resume takes, and which periodic checkpoints a run keeps:

* when the file ``last_checkpoint`` names is damaged, the resume takes the intact checkpoint with
  the highest iteration (from the file name; ``model_final.pth`` by the iteration it stores),
  whatever the modification times (a folder copied with ``cp -r`` has new ones, in directory
  order); a file whose stored iteration differs from its name's is skipped; no file is touched;
* ``SOLVER.CHECKPOINT_MAX_TO_KEEP`` (``PruningPeriodicCheckpointer``) keeps the newest periodic
  checkpoints the run created, never ``model_final.pth`` or a file present before the run, and
  leaves the resume an older checkpoint to fall back on.

Checkpoints here are tiny hand-made files (a 3x2 linear layer and an iteration), written with
torch.save as detectron2's PeriodicCheckpointer lays them out; one test trains a few iterations.
"""
import hashlib
import logging
import os
import re
import types

import pytest
import torch
from torch import nn

from projects_lda import get_project_cfg
from projects_lda.engine.checkpoint import CheckpointError, SafeCheckpointer
from projects_lda.engine.hooks import PruningPeriodicCheckpointer

from conftest import LDA_CONFIG, ROOT

import train_net  # noqa: E402  (the repository root is put on sys.path by conftest.py)


def _write(folder, name, iteration, value=None):
    """A checkpoint as the periodic checkpointer writes it; weights filled with ``value``."""
    value = iteration if value is None else value
    model = {"weight": torch.full((2, 3), float(value)), "bias": torch.zeros(2)}
    torch.save({"model": model, "iteration": iteration}, folder / name)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _snapshot(folder):
    """Name -> (content hash, mtime) of every file: the resume must leave them all as they are."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


def _resume(folder):
    model = nn.Linear(3, 2)
    loaded = SafeCheckpointer(model, str(folder)).resume_or_load("", resume=True)
    return loaded, model.weight.detach()[0, 0].item()


@pytest.fixture
def copied_run(tmp_path):
    """
    The output folder of a finished 600-iteration run (checkpoint period 100), copied with
    ``cp -r``: new modification times in directory order, here shuffled so that
    model_0000099.pth looks newest.
    """
    for it in (99, 199, 299, 399, 499, 599):
        _write(tmp_path, f"model_{it:07d}.pth", it)
    _write(tmp_path, "model_final.pth", 599)  # PeriodicCheckpointer stores max_iter - 1
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    oldest_first = [599, "final", 499, 299, 399, 199, 99]
    for rank, it in enumerate(oldest_first):
        name = "model_final.pth" if it == "final" else f"model_{it:07d}.pth"
        os.utime(tmp_path / name, (2000 + rank, 2000 + rank))
    return tmp_path


def test_resume_takes_the_highest_intact_iteration_not_the_newest_file(copied_run, caplog):
    folder = copied_run
    _truncate(folder / "model_final.pth")
    _truncate(folder / "model_0000599.pth")
    intact = set(folder.glob("*.pth")) - {folder / "model_final.pth", folder / "model_0000599.pth"}
    newest_by_time = max(intact, key=lambda p: p.stat().st_mtime)
    assert newest_by_time.name == "model_0000099.pth"  # what ordering by time would take
    before = _snapshot(folder)

    with caplog.at_level(logging.WARNING):
        loaded, weight = _resume(folder)
    assert loaded["iteration"] == 499 and weight == 499.0
    assert re.search(
        r"Cannot resume from \S*model_final\.pth .*truncated or corrupt.*resuming from "
        r"\S*model_0000499\.pth \(iteration 499\).*also skipped: \S*model_0000599\.pth",
        caplog.text,
    ), caplog.text
    assert _snapshot(folder) == before  # nothing deleted, rewritten or touched


def test_model_final_is_placed_by_the_iteration_it_stores(copied_run, caplog):
    folder = copied_run
    # the finished run (model_final.pth: 599) resumed with MAX_ITER 900: periodic files past it
    _write(folder, "model_0000699.pth", 699)
    _write(folder, "model_0000799.pth", 799)
    (folder / "last_checkpoint").write_text("model_0000799.pth")
    _truncate(folder / "model_0000799.pth")
    assert _resume(folder)[0]["iteration"] == 699

    # at its own iteration model_final.pth comes before model_0000599.pth (the same state) and
    # after any higher one
    (folder / "model_0000699.pth").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert _resume(folder)[0]["iteration"] == 599
    assert re.search(r"resuming from \S*model_final\.pth \(iteration 599\)", caplog.text)


def test_a_file_whose_stored_iteration_differs_from_its_name_is_skipped(copied_run, caplog):
    folder = copied_run
    _truncate(folder / "model_final.pth")
    _truncate(folder / "model_0000599.pth")
    _write(folder, "model_0000499.pth", 199)  # a copy of model_0000199.pth under a later name
    with caplog.at_level(logging.WARNING):
        loaded, weight = _resume(folder)
    assert loaded["iteration"] == 399 and weight == 399.0
    assert re.search(r"model_0000499\.pth \(it stores iteration 199 but its name says 499\)",
                     caplog.text), caplog.text

    # the file last_checkpoint names is loaded as named, with a warning; its stored iteration
    # is the one the run continues from
    (folder / "last_checkpoint").write_text("model_0000499.pth")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert _resume(folder)[0]["iteration"] == 199
    assert re.search(r"model_0000499\.pth stores iteration 199 but its name says 499",
                     caplog.text), caplog.text


def test_other_pth_files_are_not_resumed_from(tmp_path):
    _write(tmp_path, "model_0000099.pth", 99)
    (tmp_path / "last_checkpoint").write_text("model_0000099.pth")
    _truncate(tmp_path / "model_0000099.pth")
    # pretrained weights in the output folder: no iteration, not a checkpoint of the run
    torch.save({"model": nn.Linear(3, 2).state_dict()}, tmp_path / "R-18.pth")
    with pytest.raises(CheckpointError, match=r"no checkpoint there can be loaded.*0000099"):
        _resume(tmp_path)


# ============================================================================ pruning
def _run_hook(folder, steps, max_iter, max_to_keep, period=100):
    checkpointer = SafeCheckpointer(nn.Linear(3, 2), str(folder))
    hook = PruningPeriodicCheckpointer(checkpointer, period, max_to_keep=max_to_keep)
    hook.trainer = types.SimpleNamespace(max_iter=max_iter)
    hook.before_train()
    for it in steps:
        hook.step(it)
    return sorted(p.name for p in folder.glob("*.pth"))


def test_pruning_keeps_the_newest_of_this_run_and_everything_written_before(tmp_path, caplog):
    # an earlier run, told to keep everything, stopped after model_0000299.pth, which was
    # later damaged; this run resumes from iteration 200 and keeps 2
    for it in (99, 199, 299):
        _write(tmp_path, f"model_{it:07d}.pth", it)
    _truncate(tmp_path / "model_0000299.pth")
    earlier = {n: h for n, (h, _) in _snapshot(tmp_path).items() if n != "model_0000299.pth"}
    with caplog.at_level(logging.INFO, logger="projects_lda.engine.hooks"):
        files = _run_hook(tmp_path, range(200, 600), max_iter=600, max_to_keep=2)
    # 399 is the only file this run created beyond its newest 2 (499, 599); 299, rewritten by
    # this run, was in the folder before it and stays
    assert files == ["model_0000099.pth", "model_0000199.pth", "model_0000299.pth",
                     "model_0000499.pth", "model_0000599.pth", "model_final.pth"]
    assert re.search(r"Deleted \S*model_0000399\.pth: only the newest 2 periodic checkpoints",
                     caplog.text), caplog.text
    after = _snapshot(tmp_path)
    assert all(after[n][0] == h for n, h in earlier.items())

    # the resume still has older checkpoints to fall back on
    _truncate(tmp_path / "model_final.pth")
    _truncate(tmp_path / "model_0000599.pth")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    assert _resume(tmp_path)[0]["iteration"] == 499


def test_pruning_of_a_fresh_run_and_keeping_everything(tmp_path):
    fresh, every = tmp_path / "fresh", tmp_path / "every"
    fresh.mkdir(), every.mkdir()
    assert _run_hook(fresh, range(600), max_iter=600, max_to_keep=2) == [
        "model_0000499.pth", "model_0000599.pth", "model_final.pth"]
    assert _run_hook(every, range(600), max_iter=600, max_to_keep=None) == [
        f"model_{it:07d}.pth" for it in range(99, 600, 100)] + ["model_final.pth"]
    with pytest.raises(ValueError, match="max_to_keep must be None .* got 0"):
        PruningPeriodicCheckpointer(SafeCheckpointer(nn.Linear(3, 2)), 100, max_to_keep=0)


def _cfg(path, *opts):
    cfg = get_project_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(list(opts))
    return cfg


def test_checkpoint_max_to_keep_in_the_configs():
    checkpointer = SafeCheckpointer(nn.Linear(3, 2))
    lvis = _cfg(ROOT / "configs/LVISv1/lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml")
    assert lvis.SOLVER.CHECKPOINT_MAX_TO_KEEP == 0  # LVIS runs keep every checkpoint
    assert PruningPeriodicCheckpointer.from_config(lvis, checkpointer).max_to_keep is None
    for path in sorted((ROOT / "configs/Embedded").glob("*_embedded.yaml")):
        hook = PruningPeriodicCheckpointer.from_config(_cfg(path), checkpointer)
        assert (hook.max_to_keep, hook.period) == (2, 100), path.name
    with pytest.raises(ValueError, match=r"SOLVER.CHECKPOINT_MAX_TO_KEEP .* got -1"):
        PruningPeriodicCheckpointer.from_config(
            _cfg(LDA_CONFIG, "SOLVER.CHECKPOINT_MAX_TO_KEEP", "-1"), checkpointer
        )


def test_training_keeps_the_newest_periodic_checkpoints(train_args, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    _write(out, "model_0000099.pth", 99)  # in the folder before the run: kept as it is
    earlier = _snapshot(out)
    train_net.main(train_args(
        out, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "1",
        "SOLVER.CHECKPOINT_MAX_TO_KEEP", "2", "MODEL.LDA.WINDOW", "3", "DATASETS.TEST", "()",
    ))
    assert sorted(p.name for p in out.glob("*.pth")) == [
        "model_0000002.pth", "model_0000003.pth", "model_0000099.pth", "model_final.pth"]
    assert _snapshot(out)["model_0000099.pth"] == earlier["model_0000099.pth"]
