"""tools/gpu_check.sh: fails loudly without CUDA; its CPU dry run goes through every step."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools/gpu_check.sh"


def _run(*args, timeout=900, python=sys.executable):
    env = dict(os.environ, PYTHON=str(python), OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=str(ROOT), env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure without CUDA")
def test_fails_loudly_without_cuda(tmp_path):
    out = _run(str(tmp_path))
    assert out.returncode == 2
    assert "CUDA is not available" in out.stdout and "--dry-run" in out.stdout


def test_dry_run_goes_through_every_step(tmp_path):
    out = _run("--dry-run", str(tmp_path))
    assert out.returncode == 0, out.stdout[-5000:]
    log = (tmp_path / "gpu_check.log").read_text()
    for step in ("(a) embedded LDA config", "(b) LVIS-shaped rehearsal", "(b) box predictors alone",
                 "(c) CUDA tests", "done"):
        assert step in log, step
    # baseline and LDA in float32; LDA alone in mixed precision (bfloat16 is slow on a CPU)
    assert log.count("iterations/s") == 3
    # the header names the model measured, from the config the opts changed
    assert "R-50 FPN, 1,203 classes, 10 detections per test image, 160-px images" in log
    assert "1 threads, AMP" in log and "lda: " in log.split("1 threads, AMP")[1]
    assert "non-finite loss in 0 iteration(s)" in log
    assert "copypaste: Task: segm" in log  # the embedded run evaluated
    if not torch.cuda.is_available():
        assert "skipped" in log and "needs CUDA" in log


def test_a_failed_step_does_not_stop_the_others(tmp_path):
    """GPU time is scarce: every step runs, the failed ones are listed at the end, exit 1."""
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'broken interpreter'\nexit 3\n")
    broken.chmod(0o755)
    out = _run("--dry-run", str(tmp_path / "out"), timeout=120, python=broken)
    assert out.returncode == 1, out.stdout
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    for step in ("(c) CUDA tests", "(a) embedded LDA config", "(b) LVIS-shaped rehearsal",
                 "(b) box predictors alone"):
        assert step in log, step
    assert log.count("   FAILED (") == 5  # tests, embedded run, 2 rehearsal steps, predictors
    assert "FAILED: 5 step(s) failed:" in log and "done: log in" not in log
