"""
Which checkpoint --resume takes:

* when the file ``last_checkpoint`` names is damaged, the resume takes the intact checkpoint with
  the highest iteration (from the file name; ``model_final.pth`` by the iteration it stores),
  whatever the modification times (a folder copied with ``cp -r`` has new ones, in directory
  order); a file whose stored iteration differs from its name's is skipped; no file is touched.

Checkpoints here are tiny hand-made files (a 3x2 linear layer and an iteration), written with
torch.save as detectron2's PeriodicCheckpointer lays them out.
"""
import hashlib
import logging
import os
import re

import pytest
import torch
from torch import nn

from projects_lda.engine.checkpoint import CheckpointError, SafeCheckpointer


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
