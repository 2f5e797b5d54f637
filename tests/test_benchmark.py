"""tools/benchmark.py: the table arithmetic on hand-made records, and a real two-method run."""
import json
import sys
from pathlib import Path

import pytest
from conftest import tiny_opts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import benchmark  # noqa: E402


def _record(ap, apr, sec_iter, sec_img):
    task = {"AP": ap, "AP50": ap + 10, "APr": apr, "APc": ap, "APf": ap + 5}
    return {"bbox": task, "segm": dict(task), "sec_per_iter": sec_iter,
            "sec_per_image": sec_img, "peak_rss_mb": 1000.0}


def test_summary_and_table_by_hand():
    results = {
        "baseline": {0: _record(40.0, 30.0, 0.5, 0.1), 1: _record(42.0, 32.0, 0.5, 0.1)},
        "lda": {0: _record(43.0, 36.0, 0.6, 0.11), 1: _record(45.0, 40.0, 0.6, 0.11)},
    }
    summary = benchmark.summarize(results)
    assert summary["lda"]["bbox/AP"] == pytest.approx((44.0, 2 ** 0.5))  # mean, sample std
    assert summary["baseline"]["segm/APr"] == pytest.approx((31.0, 2 ** 0.5))
    table = benchmark.markdown_table(summary, "baseline")
    lda_rows = [line for line in table.splitlines() if line.startswith("| lda |")]
    assert "44.0 ± 1.4" in lda_rows[0] and "+3.0" in lda_rows[0] and "+7.0" in lda_rows[0]
    assert "1.20x" in lda_rows[2] and "1.10x" in lda_rows[2]  # train / test time ratios


def test_median_iteration_time_skips_warmup(tmp_path):
    rows = [{"iteration": i, "time": 5.0 if i < 10 else 1.0 + (i % 3), "total_loss": 1.0}
            for i in range(0, 100, 5)]
    rows.append({"iteration": 99, "bbox/AP": 3.0})  # evaluation row: no time
    f = tmp_path / "metrics.json"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    kept = [r["time"] for r in rows[:-1] if r["iteration"] >= 10]
    assert benchmark._median_iter_time(f) == sorted(kept)[len(kept) // 2]


def test_unknown_method_is_named():
    with pytest.raises(SystemExit, match="unknown method 'eql'"):
        benchmark.resolve_method("eql")
    with pytest.raises(SystemExit, match="config file not found: nope.yaml"):
        benchmark.resolve_method("mine=nope.yaml")


@pytest.mark.timeout(900)
def test_two_methods_run_and_resume(tiny_dataset, tmp_path, monkeypatch, capsys):
    for k in ("LDA_EXTRA_DATASETS", "OMP_NUM_THREADS", "PYTHONPATH"):
        monkeypatch.setenv(k, tiny_dataset["env"][k])
    opts = tiny_opts(tmp_path / "unused", "SOLVER.MAX_ITER", "3")
    argv = ["--methods", "baseline", "lda", "--seeds", "0", "--output", str(tmp_path), *opts]
    # a run that fails is reported by name at the end; the runs after it still train
    broken = tmp_path / "broken.yaml"
    broken.write_text("_BASE_: %s\nMODEL:\n  NOT_A_KEY: 1\n"
                      % (ROOT / benchmark.METHODS["baseline"][0]))
    with pytest.raises(SystemExit, match=r"runs failed.*broken seed 0 \(exit 1"):
        benchmark.main(["--methods", f"broken={broken}", *argv[1:]])
    assert "NOT_A_KEY" in (tmp_path / "broken" / "seed0" / "stdout.txt").read_text()
    assert not (tmp_path / "broken" / "seed0" / "run.json").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    for method in ("baseline", "lda"):
        run = data["runs"][method]["0"]
        for task in ("bbox", "segm"):
            assert set(run[task]) == set(benchmark.METRICS)
        assert run["sec_per_iter"] > 0 and run["sec_per_image"] > 0 and run["peak_rss_mb"] > 0
        # the inference time is the evaluator's file, not log text
        timing = json.loads(next((tmp_path / method / "seed0").glob(
            "inference/*/evaluation_timing.json")).read_text())
        assert run["sec_per_image"] == timing["inference_s_per_image"]
        for task in ("bbox", "segm"):
            a = run["analysis"][task]
            assert set(a["tide"]["delta_ap"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
            assert all(0 <= v <= 100 for v in a["per_class_ap"].values())
        assert len(run["analysis"]["class_image_count"]) == 6
        assert "LDAROIHeads" in run["config"] if method == "lda" else "StandardROIHeads" in run["config"]
    table = (tmp_path / "results.md").read_text()
    assert "| lda | 1 |" in table and "train time ratio" in table
    # lda's difference from the baseline, with its bootstrap CI, equals the difference of the APs
    d = data["comparisons"]["baseline"]["lda"]["0"]["bbox"]["AP"]
    ap = {m: data["runs"][m]["0"]["bbox"]["AP"] for m in ("baseline", "lda")}
    assert d[0] == pytest.approx(ap["lda"] - ap["baseline"], abs=1e-6) and d[1] <= d[0] <= d[2]
    assert "bbox ΔAP vs baseline [95% CI]" in table and "ΔAP50 Cls" in table
    # a second call trains nothing again
    stamp = (tmp_path / "lda" / "seed0" / "run.json").stat().st_mtime_ns
    benchmark.main(argv)
    assert (tmp_path / "lda" / "seed0" / "run.json").stat().st_mtime_ns == stamp
