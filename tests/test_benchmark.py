"""tools/benchmark.py (projects_lda/benchmark/): the table arithmetic on hand-made records, a real
two-method run, and the tuning protocol with fake runs."""
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_opts

from projects_lda.benchmark import cli, report, runs
from projects_lda.benchmark import protocol as bp

ROOT = Path(__file__).resolve().parents[1]


def _record(ap, apr, sec_iter, sec_img):
    task = {"AP": ap, "AP50": ap + 10, "APr": apr, "APc": ap, "APf": ap + 5}
    return {"bbox": task, "segm": dict(task), "sec_per_iter": sec_iter,
            "sec_per_image": sec_img, "peak_rss_mb": 1000.0}


def test_summary_and_table_by_hand():
    results = {
        "baseline": {0: _record(40.0, 30.0, 0.5, 0.1), 1: _record(42.0, 32.0, 0.5, 0.1)},
        "lda": {0: _record(43.0, 36.0, 0.6, 0.11), 1: _record(45.0, 40.0, 0.6, 0.11)},
    }
    summary = report.summarize(results)
    assert summary["lda"]["bbox/AP"] == pytest.approx((44.0, 2 ** 0.5))  # mean, sample std
    assert summary["baseline"]["segm/APr"] == pytest.approx((31.0, 2 ** 0.5))
    table = report.markdown_table(summary, "baseline")
    lda_rows = [line for line in table.splitlines() if line.startswith("| lda |")]
    assert "44.0 ± 1.4" in lda_rows[0] and "+3.0" in lda_rows[0] and "+7.0" in lda_rows[0]
    assert "1.20x" in lda_rows[2] and "1.10x" in lda_rows[2]  # train / test time ratios


def test_time_ratios_only_between_runs_measured_alike(monkeypatch):
    alike, alone = {"threads": 1, "jobs": 2}, {"threads": 2, "jobs": 1}
    results = {
        "baseline": {0: {**_record(40.0, 30.0, 0.5, 0.1), "timing_conditions": alike}},
        "lda": {0: {**_record(43.0, 36.0, 0.6, 0.11), "timing_conditions": alike}},
        "fedloss": {0: {**_record(41.0, 31.0, 0.25, 0.05), "timing_conditions": alone}},
        "seesaw": {0: _record(41.0, 31.0, 0.5, 0.1)},  # a record without its conditions
    }
    table = report.markdown_table(report.summarize(results), "baseline")
    rows = {line.split(" | ")[0][2:]: line for line in table.splitlines()
            if "peak RSS" not in line and line.count("|") == 8}
    assert rows["lda"].endswith("| 1 × 2 | 1.20x | 1.10x |")
    assert rows["fedloss"].endswith("| 2 × 1 | - | - |")
    assert rows["seesaw"].endswith("| - | - | - |")
    env = runs.child_env(2)
    assert env[runs.JOBS_ENV] == "2" and env["OMP_NUM_THREADS"]
    monkeypatch.setenv(runs.JOBS_ENV, "3")
    assert runs.timing_conditions() == {"threads": torch.get_num_threads(), "jobs": 3}


def test_ap_fixed_and_ap_pool_are_tabled_beside_ap_when_computed():
    results = {"baseline": {0: _record(40.0, 30.0, 0.5, 0.1)},
               "lda": {0: _record(43.0, 36.0, 0.6, 0.11), 1: _record(45.0, 40.0, 0.6, 0.11)}}
    assert "AP-fixed" not in report.markdown_table(report.summarize(results), "baseline")
    for method, runs_ in results.items():
        for s, r in runs_.items():
            for task in ("bbox", "segm"):
                r[task].update({k: r[task]["AP"] - 2 for k in runs.LARGE_VOCAB_METRICS})
                r[task]["AP-pool"] = r[task]["AP"] - (1 if method == "lda" else 5)
    table = report.markdown_table(report.summarize(results), "baseline")
    head = next(line for line in table.splitlines() if "bbox AP-pool" in line).split(" | ")
    row = [line for line in table.splitlines() if line.startswith("| lda |")][1].split(" | ")
    assert row[head.index("bbox AP-fixed")] == "42.0 ± 1.4"
    assert row[head.index("bbox AP-pool")] == "43.0 ± 1.4"
    assert row[-3:] == ["+4.0", "+4.0", "+8.0 |"]  # ΔAP, ΔAP-fixed, ΔAP-pool vs the baseline


def test_intervals_of_runs_whose_detections_are_gone_come_from_the_earlier_report(tmp_path):
    def run(ap, seed):
        return {**_record(ap, ap - 10, 0.5, 0.1), "seed": seed, "config": "SEED: 0\n",
                "results_json": str(tmp_path / f"gone_{ap}.json"), "val_json": "val.json"}

    results = {"baseline": {0: run(40.0, 0), 1: run(41.0, 1)}, "lda": {0: run(43.0, 0)}}
    b, l = (report.run_fingerprint(results[m][0]) for m in ("baseline", "lda"))
    assert b != l and b == report.run_fingerprint(json.loads(json.dumps(results["baseline"][0])))
    kept = {"bbox": {"AP": [3.0, 2.5, 3.6], "APr": [6.0, 4.0, 8.0]},
            "segm": {"AP": [2.0, 1.5, 2.4], "APr": [5.0, 3.0, 7.0]},
            "runs": [b, l], "n_bootstrap": 200, "bootstrap_seed": 0}
    flipped = {**kept, "bbox": {"AP": [-3.0, -3.6, -2.5], "APr": [-6.0, -8.0, -4.0]},
               "runs": [l, b]}
    earlier = json.loads(json.dumps({"baseline": {"lda": {"0": kept}},
                                     "lda": {"baseline": {"0": flipped}}}))  # as read back
    table, data = report.build_report(results, "baseline", 200, earlier=earlier)
    assert data["comparisons"]["baseline"]["lda"][0] == kept
    assert data["comparisons"]["lda"]["baseline"][0]["runs"] == [l, b]
    assert "| lda | 0 | +3.0 [+2.5, +3.6] | +6.0 [+4.0, +8.0] | - | - |" in table
    assert "| baseline | 0 | - | - | -3.0 [-3.6, -2.5] | -6.0 [-8.0, -4.0] |" in table
    assert "| baseline | 1 | - | - | - | - |" in table  # no LDA seed 1: no comparison
    # a bootstrap of another size, or a record that changed since: not the same interval
    assert report.build_report(results, "baseline", 1000, earlier=earlier)[1]["comparisons"] == {}
    results["lda"][0]["segm"]["AP"] = 44.0
    assert "lda" not in report.compare_runs(results, ["baseline"], 200, earlier=earlier).get(
        "baseline", {})


def test_coverage_tables_count_classes_never_predicted_by_group():
    # JSON keys: the records' class ids come back as strings
    analysis = {"class_frequency": {"1": "r", "2": "r", "3": "c", "4": "f"},
                "detections_per_class": {"1": 0, "2": 7, "3": 0, "4": 12},
                "segm": {"per_class_ap": {"1": 0.0, "2": 0.0, "3": 0.0, "4": 35.5}}}
    stats = {"alpha_at": {"25%": 0.0, "50%": 0.05, "75%": 0.1, "100%": 0.125},
             "alpha_zero_fraction": 0.25, "acc_unbalanced": 0.5, "acc_balanced": 0.25,
             "beta": {"max": 20.0, "median": 2.5}, "non_finite": [],
             "loss_share": {"loss_fgbg": 0.1, "loss_cls_unbalanced": 0.3,
                            "loss_cls_balanced": 0.2, "loss_intra": 0.01, "loss_inter": 0.02}}
    lines = report.coverage_tables({
        "baseline": {0: {"analysis": analysis}},
        "lda": {0: {"analysis": analysis, "lda_stats": stats}},
        "old": {0: {"analysis": {}}},  # a record made before the counts were kept: left out
    })
    assert "| baseline | 0 | 1 / 1 / 0 | 2 / 1 / 0 |" in lines
    assert "| lda | 0 | 1 / 1 / 0 | 2 / 1 / 0 |" in lines
    assert not any(line.startswith("| old |") for line in lines)
    assert ("| lda | 0 | 0.000 / 0.050 / 0.100 / 0.125 | 25% | 0.500 / 0.250 | 20.0 / 2.50 "
            "| 0.10, 0.30, 0.20, 0.01, 0.02 | none |") in lines
    assert report.coverage_tables({"old": {0: {"analysis": {}}}}) == []


def test_top_per_image_keeps_each_images_best_k():
    rows = [{"image_id": i, "score": s, "category_id": c}
            for i, s, c in ((1, 0.2, 5), (1, 0.9, 6), (2, 0.1, 7), (1, 0.5, 7), (2, 0.3, 5))]
    assert [(r["image_id"], r["category_id"]) for r in runs.top_per_image(rows, 2)] == \
        [(1, 6), (1, 7), (2, 5), (2, 7)]
    assert [r["category_id"] for r in runs.top_per_image(rows, 1)] == [6, 5]
    assert len(runs.top_per_image(rows, -1)) == 5 and runs.top_per_image([], 3) == []


def test_median_iteration_time_skips_warmup(tmp_path):
    rows = [{"iteration": i, "time": 5.0 if i < 10 else 1.0 + (i % 3), "total_loss": 1.0}
            for i in range(0, 100, 5)]
    rows.append({"iteration": 99, "bbox/AP": 3.0})  # evaluation row: no time
    f = tmp_path / "metrics.json"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    kept = [r["time"] for r in rows[:-1] if r["iteration"] >= 10]
    assert runs.median_iter_time(f) == sorted(kept)[len(kept) // 2]


def test_unknown_method_is_named():
    with pytest.raises(SystemExit, match="unknown method 'eql'"):
        runs.resolve_method("eql")
    with pytest.raises(SystemExit, match="config file not found: nope.yaml"):
        runs.resolve_method("mine=nope.yaml")


@pytest.mark.timeout(900)
def test_two_methods_run_and_resume(tiny_dataset, tmp_path, monkeypatch, capsys):
    for k in ("LDA_EXTRA_DATASETS", "OMP_NUM_THREADS", "PYTHONPATH"):
        monkeypatch.setenv(k, tiny_dataset["env"][k])
    opts = tiny_opts(tmp_path / "unused", "SOLVER.MAX_ITER", "3",
                     "TEST.LVIS_EVAL.METRICS", "('standard', 'fixed', 'pool')")
    argv = ["--methods", "baseline", "lda", "--seeds", "0", "--output", str(tmp_path),
            "--bootstrap", "100", *opts]
    # a run that fails is reported by name at the end; the runs after it still train
    broken = tmp_path / "broken.yaml"
    broken.write_text("_BASE_: %s\nMODEL:\n  NOT_A_KEY: 1\n"
                      % (ROOT / runs.METHODS["baseline"][0]))
    with pytest.raises(SystemExit, match=r"runs failed.*broken seed 0 \(exit 1"):
        cli.main(["--methods", f"broken={broken}", *argv[1:]])
    assert "NOT_A_KEY" in (tmp_path / "broken" / "seed0" / "stdout.txt").read_text()
    assert not (tmp_path / "broken" / "seed0" / "run.json").exists()
    data = json.loads((tmp_path / "results.json").read_text())
    for method in ("baseline", "lda"):
        run = data["runs"][method]["0"]
        for task in ("bbox", "segm"):
            assert set(run[task]) == set(runs.METRICS + runs.LARGE_VOCAB_METRICS)
        assert run["sec_per_iter"] > 0 and run["sec_per_image"] > 0 and run["peak_rss_mb"] > 0
        assert run["resumed_from"] is None  # trained from the start in one process
        # the inference time is the evaluator's file, not log text
        timing = json.loads(next((tmp_path / method / "seed0").glob(
            "inference/*/evaluation_timing.json")).read_text())
        assert run["sec_per_image"] == timing["inference_s_per_image"]
        for task in ("bbox", "segm"):
            a = run["analysis"][task]
            assert set(a["tide"]["delta_ap"]) == {"Cls", "Loc", "Both", "Dupe", "Bkg", "Miss"}
            assert all(0 <= v <= 100 for v in a["per_class_ap"].values())
        assert len(run["analysis"]["class_image_count"]) == 6
        # the detections JSON counted per class: every class keyed, the total its length
        rows = json.loads(Path(run["results_json"]).read_text())
        counts = run["analysis"]["detections_per_class"]
        assert set(counts) == set(run["analysis"]["class_image_count"])
        assert sum(counts.values()) == len(rows)
        if method == "lda":  # LDA's inner workings travel with the record
            stats = run["lda_stats"]
            assert stats["iterations"] == 3 and stats["non_finite"] == []
            assert 0 <= stats["alpha_at"]["100%"] <= 1 and stats["beta"]["max"] > 0
        else:
            assert "lda_stats" not in run
        heads = "LDAROIHeads" if method == "lda" else "StandardROIHeads"
        assert heads in run["config"]
        # a finished run keeps its final weights only (model_0000001.pth was written, then removed)
        assert [p.name for p in (tmp_path / method / "seed0").glob("*.pth")] == ["model_final.pth"]
    table = (tmp_path / "results.md").read_text()
    assert "| lda | 1 |" in table and "train time ratio" in table
    # lda's difference from the baseline, with its bootstrap CI, equals the difference of the APs
    d = data["comparisons"]["baseline"]["lda"]["0"]["bbox"]["AP"]
    ap = {m: data["runs"][m]["0"]["bbox"]["AP"] for m in ("baseline", "lda")}
    assert d[0] == pytest.approx(ap["lda"] - ap["baseline"], abs=1e-6) and d[1] <= d[0] <= d[2]
    assert "bbox ΔAP vs baseline [95% CI]" in table and "ΔAP50 Cls" in table
    # the same for AP-fixed / AP-pool, from the runs' saved match records
    for task in ("bbox", "segm"):
        for metric in ("AP-fixed", "AP-pool"):
            d = data["comparisons"]["baseline"]["lda"]["0"][task][metric]
            ap = {m: data["runs"][m]["0"][task][metric] for m in ("baseline", "lda")}
            assert d[0] == pytest.approx(ap["lda"] - ap["baseline"], abs=1e-6)
            assert d[1] <= d[0] <= d[2]
    # a second call trains nothing again; its report's resamples, computed in two processes,
    # are the first one's
    stamp = (tmp_path / "lda" / "seed0" / "run.json").stat().st_mtime_ns
    cli.main(["--jobs", "2", *argv])
    assert (tmp_path / "lda" / "seed0" / "run.json").stat().st_mtime_ns == stamp
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["comparisons"] == data["comparisons"]
    # a run's match records lost: its AP / APr intervals stand, the entry names what is missing
    # and the table shows "-" for AP-fixed / AP-pool
    lost = Path(data["runs"]["lda"]["0"]["match_records"]["bbox"])
    lost.rename(lost.with_suffix(".aside"))
    part = report.compare_runs({m: {0: data["runs"][m]["0"]} for m in ("baseline", "lda")},
                               ["baseline"], 100)["baseline"]["lda"][0]
    assert list(part["bbox"]["AP"]) == pytest.approx(
        data["comparisons"]["baseline"]["lda"]["0"]["bbox"]["AP"])
    assert "AP-fixed" not in part["bbox"] and str(lost) in part["incomplete"]
    assert part["incomplete"].startswith("AP-fixed / AP-pool not computed: ")


# ------------------------------------------------------------------ the tuning protocol


def test_selection_rules():
    settings = ["default", "b", "c"]
    assert bp.select({}, settings) == (None, [("default", 0), ("b", 0), ("c", 0)])
    clear = {"default": {0: 40.0}, "b": {0: 41.0}, "c": {0: 30.0}}
    assert bp.select(clear, settings) == ("b", [])  # 1 AP apart: no second seed
    close = {"default": {0: 40.5}, "b": {0: 41.0}, "c": {0: 30.0}}
    assert bp.select(close, settings) == (None, [("b", 1), ("default", 1)])
    close["b"][1], close["default"][1] = 39.0, 40.0  # means: default 40.25, b 40.0
    assert bp.select(close, settings) == ("default", [])
    close["b"][1] = 39.5  # equal means: the paper's default
    assert bp.select(close, settings) == ("default", [])


def test_next_runs_reports_the_chosen_setting_seed_by_seed():
    grids = {"m": [("default", []), ("b", [])], "n": [("default", []), ("b", [])]}
    scores = {"m": {"default": {0: 40.0}, "b": {0: 45.0}}}
    done = {("m", "default", 0), ("m", "b", 0)}
    runs, chosen = bp.next_runs(grids, scores, done)
    assert chosen == {"m": "b"}
    # m: report seeds 1, 2 of "b" (seed 0 is the tuning run); n: its tuning runs; seed by seed
    assert runs == [("n", "default", 0), ("n", "b", 0), ("m", "b", 1), ("m", "b", 2)]
    runs, _ = bp.next_runs(grids, {}, set(), chosen={"m": "b", "n": "default"})
    assert runs == [("m", "b", 0), ("m", "default", 0), ("n", "default", 0),
                    ("m", "b", 1), ("n", "default", 1), ("m", "b", 2), ("n", "default", 2)]


# val segm AP of each (method, setting, seed) of the fake runs
FAKE_VAL_AP = {("baseline", "rfs_t0.1", 0): 40.0, ("baseline", "rfs_t0.3", 0): 45.0,
               ("lda", "factor1", 0): 50.0, ("lda", "factor5", 0): 50.5,  # within 1 AP
               ("lda", "factor1", 1): 49.0, ("lda", "factor5", 1): 51.0,
               ("lda", "factor5", 2): 52.5}


class FakeRuns:
    """Stands in for training: a record with the fake val AP (test AP = val AP + 1)."""

    def __init__(self, fail=(), stop_after=None, prefix="lvis_embedded", val_ap=None):
        self.calls, self.fail, self.stop_after = [], set(fail), stop_after
        self.prefix, self.val_ap = prefix, FAKE_VAL_AP if val_ap is None else val_ap

    def __call__(self, method, setting, seed, opts, run_dir):
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt  # the session ends
        self.calls.append((method, setting, seed))
        if (method, setting, seed) in self.fail:
            return None
        val = self.val_ap.get((method, setting, seed), 30.0 + seed)
        metrics = {k: val for k in runs.METRICS}
        test = {k: val + 1 for k in runs.METRICS}
        return {"seed": seed, "opts": opts, "bbox": test, "segm": dict(test),
                "splits": {f"{self.prefix}_val": {"bbox": metrics, "segm": metrics},
                           f"{self.prefix}_test": {"bbox": test, "segm": test}},
                "sec_per_iter": 1.0, "sec_per_image": 0.1, "peak_rss_mb": 100.0}


def _tune(tmp_path, records, fake, *extra):
    argv = ["--tune", "--methods", "baseline", "lda", "--output", str(tmp_path / "out"),
            "--records", str(records), "--settings", str(tmp_path / "tuned.json"),
            "--bootstrap", "10", *extra]
    return cli.main(argv, execute=fake)


def test_tune_then_report_and_resume(tmp_path):
    records = tmp_path / "runs"
    fake = FakeRuns()
    _tune(tmp_path, records, fake, "--jobs", "2")
    assert sorted(fake.calls) == sorted([
        ("baseline", "rfs_t0.1", 0), ("baseline", "rfs_t0.3", 0),  # grid
        ("baseline", "rfs_t0.3", 1), ("baseline", "rfs_t0.3", 2),  # report of the chosen
        ("lda", "factor1", 0), ("lda", "factor5", 0),  # grid
        ("lda", "factor1", 1), ("lda", "factor5", 1),  # within 1 AP: a second seed
        ("lda", "factor5", 2)])  # the chosen's seed 1 is the tie-break run
    settings = json.loads((tmp_path / "tuned.json").read_text())
    assert {m: v["chosen"] for m, v in settings["methods"].items()} == \
        {"baseline": "rfs_t0.3", "lda": "factor5"}
    assert settings["methods"]["lda"]["settings"]["factor1"]["val_ap"] == {"0": 50.0, "1": 49.0}
    assert settings["methods"]["lda"]["settings"]["factor1"]["opts"] == \
        ["MODEL.LDA.BALANCED_LOSS_FACTOR", "1.0"]
    assert (records / "exhaustive" / "lda" / "factor5" / "seed2.json").is_file()
    table = (records / "exhaustive" / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| lda |")]
    assert "| lda | 3 | 52.3 ± 1.0" in rows[0]  # test AP of seeds 0, 1, 2: 51.5, 52, 53.5
    assert "| baseline (untuned: rfs_t0.1) | 1 | 41.0 |" in table  # one seed: no spread
    # everything is recorded: a second call runs nothing
    again = FakeRuns()
    _tune(tmp_path, records, again)
    assert again.calls == []
    # the report mode reads the settings file: the chosen settings and the untuned ones only
    report = FakeRuns()
    cli.main(["--report", str(tmp_path / "tuned.json"), "--output", str(tmp_path / "o2"),
                    "--records", str(tmp_path / "runs2"), "--bootstrap", "10"], execute=report)
    assert sorted(report.calls) == sorted(
        [("baseline", "rfs_t0.3", s) for s in (0, 1, 2)] + [("baseline", "rfs_t0.1", 0)]
        + [("lda", "factor5", s) for s in (0, 1, 2)] + [("lda", "factor1", 0)])


def test_a_chosen_default_setting_has_no_separate_untuned_row(tmp_path):
    default_wins = {**FAKE_VAL_AP, ("baseline", "rfs_t0.1", 0): 46.0}
    _tune(tmp_path, tmp_path / "runs", FakeRuns(val_ap=default_wins))
    table = (tmp_path / "runs/exhaustive/results.md").read_text()
    assert "| baseline | 3 | 37.3 ± 8.4 |" in table  # test AP of rfs_t0.1 seeds 0-2: 47, 32, 33
    assert "baseline (untuned" not in table
    assert "| lda (untuned: factor1) | 1 |" in table


def test_tuning_some_methods_keeps_the_others_in_the_settings_file(tmp_path):
    records, settings = tmp_path / "runs", tmp_path / "tuned.json"

    def tune(method):
        cli.main(["--tune", "--methods", method, "--output", str(tmp_path / "out"), "--records",
                  str(records), "--settings", str(settings), "--bootstrap", "10"],
                 execute=FakeRuns())
        return json.loads(settings.read_text())["methods"]

    assert list(tune("baseline")) == ["baseline"]
    methods = tune("lda")  # another session tunes LDA: the baseline's entry stays
    assert {m: v["chosen"] for m, v in methods.items()} == {"baseline": "rfs_t0.3",
                                                           "lda": "factor5"}
    # and its tables hold both methods, the baseline's read from its records (test AP of
    # rfs_t0.3 seeds 0-2: 46, 32, 33)
    rows = [line.split(" | ")[:3] for line in
            (records / "exhaustive/results.md").read_text().split("\n\n")[0].splitlines()[2:]]
    assert rows == [["| baseline", "3", "37.0 ± 7.8"],
                    ["| baseline (untuned: rfs_t0.1)", "1", "41.0"],
                    ["| lda", "3", "52.3 ± 1.0"], ["| lda (untuned: factor1)", "1", "51.0"]]
    (records / "exhaustive/baseline/rfs_t0.3/seed1.json").unlink()
    tune("lda")  # a method of the file whose records are missing: only the rows recorded
    assert "| baseline | 2 |" in (records / "exhaustive/results.md").read_text()
    assert list(tune("baseline")) == ["baseline", "lda"]  # the variant's order, not the writer's


def test_tune_resumes_after_interruption_and_ignores_other_options(tmp_path):
    records = tmp_path / "runs"
    with pytest.raises(KeyboardInterrupt):
        _tune(tmp_path, records, FakeRuns(stop_after=3))
    assert len(list(records.glob("exhaustive/*/*/seed*.json"))) == 3
    rest = FakeRuns()
    _tune(tmp_path, records, rest)
    assert len(rest.calls) == 9 - 3
    smoke = FakeRuns()  # other config options (a short smoke run): its own runs
    _tune(tmp_path, tmp_path / "smoke", smoke, "SOLVER.MAX_ITER", "20")
    assert len(smoke.calls) == 9
    rerun = FakeRuns()
    _tune(tmp_path, records, rerun, "SOLVER.MAX_ITER", "20")
    assert len(rerun.calls) == 9  # the records made without the option are not reused
    recorded = json.loads((records / "exhaustive/lda/factor5/seed0.json").read_text())
    assert recorded["opts"][-2:] == ["SOLVER.MAX_ITER", "20"]  # rerun, not reused


def test_finished_only_tabulates_the_records_and_trains_nothing(tmp_path):
    records = tmp_path / "runs"
    _tune(tmp_path, records, FakeRuns())
    (records / "exhaustive/lda/factor5/seed2.json").unlink()
    (records / "exhaustive/results.md").unlink()
    settings = (tmp_path / "tuned.json").read_text()
    idle = FakeRuns()
    cli.main(["--report", str(tmp_path / "tuned.json"), "--finished-only", "--output",
              str(tmp_path / "so_far"), "--records", str(records), "--bootstrap", "10"],
             execute=idle)
    assert idle.calls == []
    table = (tmp_path / "so_far/exhaustive/results.md").read_text()
    assert "| lda | 2 | 51.8 ± 0.4" in table  # test AP of seeds 0 and 1: 51.5, 52
    assert "| baseline | 3 |" in table
    assert not (records / "exhaustive/results.md").exists()  # the protocol's, when finished
    # tuning so far: a method still undecided (its tie-break run not recorded) is left out
    (records / "exhaustive/lda/factor1/seed1.json").unlink()
    _tune(tmp_path, records, idle, "--finished-only", "--output", str(tmp_path / "so_far2"))
    assert idle.calls == []
    table = (tmp_path / "so_far2/exhaustive/results.md").read_text()
    assert "| baseline | 3 |" in table and "| lda |" not in table
    assert (tmp_path / "tuned.json").read_text() == settings
    # --report of the decided methods of a file that still has an undecided one
    (tmp_path / "partial.json").write_text(settings.replace('"chosen": "factor5"',
                                                            '"chosen": null'))
    argv = ["--report", str(tmp_path / "partial.json"), "--finished-only", "--output",
            str(tmp_path / "so_far3"), "--records", str(records), "--bootstrap", "10"]
    with pytest.raises(SystemExit, match=r"no setting chosen yet for \['lda'\]"):
        cli.main(argv, execute=idle)
    with pytest.raises(SystemExit, match=r"no method \['nope'\]"):
        cli.main([*argv, "--methods", "nope"], execute=idle)
    cli.main([*argv, "--methods", "baseline"], execute=idle)
    table = (tmp_path / "so_far3/exhaustive/results.md").read_text()
    assert "| baseline | 3 |" in table and "| lda |" not in table and idle.calls == []
    with pytest.raises(SystemExit, match="--finished-only goes with --tune or --report"):
        cli.main(["--finished-only", "--output", str(tmp_path / "x")], execute=idle)


def test_committed_records_name_no_path_of_the_machine(tmp_path):
    class Located(FakeRuns):  # records as a real run writes them: its paths, its run.json
        def __call__(self, method, setting, seed, opts, run_dir):
            record = super().__call__(method, setting, seed, opts, run_dir)
            record.update(config=f"OUTPUT_DIR: {run_dir}\nSEED: {seed}\n",
                          results_json=str(run_dir / "dets.json"), val_json="/data/val.json",
                          match_records={"bbox": str(run_dir / "m.npy")})
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "run.json").write_text(json.dumps(record))
            return record

    records = tmp_path / "runs"
    _tune(tmp_path, records, Located())
    run_dir = tmp_path / "out/exhaustive/lda/factor5/seed0"
    committed = json.loads((records / "exhaustive/lda/factor5/seed0.json").read_text())
    full = json.loads((run_dir / "run.json").read_text())
    assert committed == {k: v for k, v in full.items() if k not in runs.LOCATION_KEYS} | {
        "config": "SEED: 0\n"}
    assert str(tmp_path) not in json.dumps(committed)
    assert report.run_fingerprint(committed) == report.run_fingerprint(full)
    # the report finds the detections through the run folder's run.json, where it is here
    output = json.loads((tmp_path / "out/exhaustive/results.json").read_text())
    assert output["runs"]["lda"]["0"]["results_json"] == str(run_dir / "dets.json")
    assert runs.with_location(committed, run_dir)["match_records"] == full["match_records"]
    assert runs.with_location(committed, tmp_path / "another_machine") == committed


def test_the_protocol_report_keeps_the_tracked_intervals_of_runs_whose_detections_are_gone(
        tmp_path):
    records = tmp_path / "runs"
    _tune(tmp_path, records, FakeRuns())  # records without detections, as an earlier machine's
    tracked = records / "exhaustive/results.json"
    assert "| lda | 0 | - | - |" in (records / "exhaustive/results.md").read_text()
    fingerprints = [report.run_fingerprint(json.loads(
        (records / f"exhaustive/{m}/seed0.json").read_text())) for m in ("baseline/rfs_t0.3",
                                                                          "lda/factor5")]
    data = json.loads(tracked.read_text())
    data["comparisons"] = {"baseline": {"lda": {"0": {
        "bbox": {"AP": [1.5, 1.0, 2.0], "APr": [2.5, 1.0, 4.0]}, "segm": {},
        "runs": fingerprints, "n_bootstrap": 10, "bootstrap_seed": 0}}}}
    tracked.write_text(json.dumps(data))
    cli.main(["--report", str(tmp_path / "tuned.json"), "--finished-only", "--output",
              str(tmp_path / "so_far"), "--records", str(records), "--bootstrap", "10"],
             execute=FakeRuns())
    table = (tmp_path / "so_far/exhaustive/results.md").read_text()
    assert "| lda | 0 | +1.5 [+1.0, +2.0] | +2.5 [+1.0, +4.0] |" in table
    assert "| lda | 1 | - | - |" in table  # none kept for seed 1


def test_failed_run_is_named_and_blocks_only_its_method(tmp_path):
    fake = FakeRuns(fail={("lda", "factor1", 0)})
    with pytest.raises(SystemExit, match=r"lda factor1 seed 0.*no setting chosen for \['lda'\]"):
        _tune(tmp_path, tmp_path / "runs", fake)
    settings = json.loads((tmp_path / "tuned.json").read_text())
    assert settings["methods"]["baseline"]["chosen"] == "rfs_t0.3"
    assert settings["methods"]["lda"]["chosen"] is None
    assert ("baseline", "rfs_t0.3", 2) in fake.calls


def test_a_run_another_command_is_training_is_left_to_it(tmp_path, caplog):
    run_dir = tmp_path / "out/exhaustive/baseline/rfs_t0.1/seed0"
    with runs.run_lock(run_dir) as holder:
        assert holder is None
        assert (tmp_path / "out/exhaustive/baseline/rfs_t0.1/seed0.lock").read_text() == \
            f"{os.getpid()}\n"
        with runs.run_lock(run_dir) as other:  # a second command: told who holds it
            assert other == str(os.getpid())
        fake = FakeRuns()
        with pytest.raises(SystemExit, match=r"^runs trained by another command, not tabled "
                           rf"here: baseline rfs_t0.1 seed 0 \(pid {os.getpid()}\); no setting "
                           r"chosen for \['baseline'\]$"):
            _tune(tmp_path, tmp_path / "runs", fake)
        assert ("baseline", "rfs_t0.1", 0) not in fake.calls
        assert ("lda", "factor5", 2) in fake.calls  # the other method goes on
        # the log says whose run it is, not that it failed
        assert "baseline rfs_t0.1 seed 0: not finished by this command" in caplog.text
        assert "failed" not in caplog.text
        # the plain --methods mode too
        with runs.run_lock(tmp_path / "plain/baseline/seed0"), pytest.raises(
                SystemExit, match=r"left out of the table: baseline seed 0 \(trained by another "
                                  rf"command, pid {os.getpid()}\)$"):
            cli.main(["--methods", "baseline", "--seeds", "0", "--output", str(tmp_path / "plain")])
        assert not (tmp_path / "plain/baseline/seed0").exists()  # not started
    rest = FakeRuns()  # released (as when the other command ends): this one trains it
    _tune(tmp_path, tmp_path / "runs", rest)
    assert ("baseline", "rfs_t0.1", 0) in rest.calls


def test_many_class_variant_runs_its_configs_grids_and_single_seed_methods(tmp_path):
    # every protocol method has a config of the many-class variant; the grids that scale with
    # the dataset are the variant's; --single-seed methods are reported with seed 0 only
    for method in bp.GRIDS:
        config = bp.method_config(method, "many_class")
        assert config.startswith("configs/EmbeddedMany/") and config.endswith("_embeddedmany.yaml")
        assert (ROOT / config).is_file()
    assert bp.method_config("lda", "exhaustive") == runs.METHODS["lda"][0]
    with pytest.raises(SystemExit, match="lda_cosine has no config for the many_class variant"):
        bp.method_config("lda_cosine", "many_class")
    fake = FakeRuns(prefix="lvis_embedded_many")
    settings = tmp_path / "tuned.json"
    argv = ["--tune", "--variant", "many_class", "--methods", "baseline", "fedloss",
            "--single-seed", "fedloss", "--output", str(tmp_path / "out"), "--records",
            str(tmp_path / "runs"), "--settings", str(settings), "--bootstrap", "10"]
    cli.main(argv, execute=fake)
    # (equal fake val APs: both settings get the tie-break seed 1, the paper's default wins)
    assert sorted(fake.calls) == sorted(
        [("baseline", "rfs_t0.04", s) for s in (0, 1, 2)] + [("baseline", "rfs_t0.12", s)
                                                            for s in (0, 1)]
        + [("fedloss", s, k) for s in ("num_classes50", "num_classes12") for k in (0, 1)])
    recorded = json.loads((tmp_path / "runs/many_class/baseline/rfs_t0.12/seed0.json").read_text())
    assert recorded["opts"][:2] == ["DATALOADER.REPEAT_THRESHOLD", "0.12"]
    assert "('lvis_embedded_many_val', 'lvis_embedded_many_test')" in recorded["opts"]
    data = json.loads(settings.read_text())
    assert data["methods"]["fedloss"]["report_seeds"] == [0]
    assert "report_seeds" not in data["methods"]["baseline"]
    # the report mode keeps the single seed; unknown single-seed methods are named
    report = FakeRuns(prefix="lvis_embedded_many")
    cli.main(["--report", str(settings), "--output", str(tmp_path / "o2"), "--records",
              str(tmp_path / "runs2"), "--bootstrap", "10"], execute=report)
    assert [c for c in report.calls if c[0] == "fedloss"] == [("fedloss", "num_classes50", 0)]
    with pytest.raises(SystemExit, match=r"no tuning grid for \['nope'\]"):
        cli.main([*argv[:6], "--single-seed", "nope"], execute=FakeRuns())


def _config_text(record, method, **changes):
    """The full config a run of ``method`` with the record's options writes, with ``changes``
    (``SOLVER__MAX_ITER=7``) applied: as if the YAML file had said so when the record was made."""
    from projects_lda.config import get_project_cfg
    cfg = get_project_cfg()
    cfg.merge_from_file(str(ROOT / bp.method_config(method, "exhaustive")))
    cfg.merge_from_list(record["opts"] + [x for k, v in changes.items()
                                          for x in (k.replace("__", "."), str(v))])
    return cfg.dump()


def _unfinished_baseline_run(records, out, **changes):
    """Turns the recorded baseline rfs_t0.3 seed 2 into a run interrupted at iteration 100
    whose config.yaml had ``changes``: its record gone, its folder in ``out``."""
    record = records / "exhaustive/baseline/rfs_t0.3/seed2.json"
    run_dir = out / "baseline/rfs_t0.3/seed2"
    run_dir.mkdir(parents=True)
    opts = json.loads(record.read_text())["opts"]
    (run_dir / "config.yaml").write_text(_config_text({"opts": opts}, "baseline", **changes))
    (run_dir / "model_0000099.pth").write_bytes(b"weights")
    record.unlink()
    return run_dir


def test_records_and_unfinished_runs_of_another_config_are_run_again_and_kept(tmp_path):
    records, out = tmp_path / "runs", tmp_path / "out" / "exhaustive"
    _tune(tmp_path, records, FakeRuns())
    old, same = (records / "exhaustive/lda" / s / "seed0.json" for s in ("factor5", "factor1"))
    for path, changes in ((old, {"SOLVER__MAX_ITER": 7}), (same, {})):
        rec = json.loads(path.read_text())
        rec["config"] = _config_text(rec, "lda", **changes)
        path.write_text(json.dumps(rec))
    # an unfinished run of the baseline made with another lr: its checkpoint must not be resumed
    unfinished = _unfinished_baseline_run(records, out, SOLVER__BASE_LR=0.5)
    again = FakeRuns()
    _tune(tmp_path, records, again)
    # the record whose schedule differs from the YAML's is run again, the matching one is not
    assert sorted(again.calls) == [("baseline", "rfs_t0.3", 2), ("lda", "factor5", 0)]
    kept = json.loads((old.parent / "seed0.json.replaced").read_text())
    assert "MAX_ITER: 7" in kept["config"]
    assert "config" not in json.loads(old.read_text())  # the new (fake) record
    assert not unfinished.exists()
    assert (out / "baseline/rfs_t0.3/seed2.replaced/model_0000099.pth").read_bytes() == b"weights"
    reason = bp.stale_reason(kept, bp.method_config("lda", "exhaustive"), kept["opts"])
    assert reason == "made with another config: SOLVER.MAX_ITER 7 in the record, 600 now"


def test_runs_whose_evaluation_keys_changed_are_evaluated_again_not_retrained(tmp_path):
    records, out = tmp_path / "runs", tmp_path / "out" / "exhaustive"
    _tune(tmp_path, records, FakeRuns())
    # finished runs of lda factor5 seed 0 and 1, made when the model kept 50 detections an
    # image: seed 0's folder has its weights and results, seed 1's lost its weights
    for seed, weights in ((0, True), (1, False)):
        path = records / f"exhaustive/lda/factor5/seed{seed}.json"
        rec = json.loads(path.read_text())
        rec["config"] = _config_text(rec, "lda", TEST__DETECTIONS_PER_IMAGE=50)
        path.write_text(json.dumps(rec))
        run_dir = out / f"lda/factor5/seed{seed}"
        (run_dir / "inference").mkdir(parents=True)
        (run_dir / "inference/results.json").write_text("old")
        (run_dir / "run.json").write_text(json.dumps(rec))
        if weights:
            (run_dir / "model_final.pth").write_bytes(b"weights")
    # an unfinished baseline run of the old evaluation keys resumes from its checkpoint
    _unfinished_baseline_run(records, out, MODEL__ROI_HEADS__SCORE_THRESH_TEST=0.3)
    dirs_at_call = {}

    def fake(method, setting, seed, opts, run_dir):
        dirs_at_call[method, seed] = sorted(p.name for p in run_dir.glob("*"))
        return FakeRuns()(method, setting, seed, opts, run_dir)

    _tune(tmp_path, records, fake)
    assert sorted(dirs_at_call) == [("baseline", 2), ("lda", 0), ("lda", 1)]
    # evaluated in place from its weights, its old results and run.json kept beside
    assert dirs_at_call["lda", 0] == ["inference.replaced", "model_final.pth", "run.json.replaced"]
    assert (out / "lda/factor5/seed0/inference.replaced/results.json").read_text() == "old"
    assert "DETECTIONS_PER_IMAGE: 50" in json.loads(
        (records / "exhaustive/lda/factor5/seed0.json.replaced").read_text())["config"]
    # no weights to evaluate: trained again from the start in a fresh folder, the old one kept
    assert dirs_at_call["lda", 1] == []
    assert (out / "lda/factor5/seed1.replaced/run.json").is_file()
    assert dirs_at_call["baseline", 2] == ["config.yaml", "model_0000099.pth"]
    # evaluation keys, and the training keys that only look like them
    assert all(bp.is_evaluation_key(k) for k in (
        "DATASETS.TEST", "TEST.DETECTIONS_PER_IMAGE", "TEST.LVIS_EVAL.DETECTIONS_PER_CATEGORY",
        "INPUT.MIN_SIZE_TEST", "MODEL.RPN.POST_NMS_TOPK_TEST"))
    assert not any(bp.is_evaluation_key(k) for k in (
        "TEST.PRECISE_BN.ENABLED", "DATASETS.TRAIN", "INPUT.MIN_SIZE_TRAIN", "SOLVER.MAX_ITER"))


def test_icons_1203_carries_the_peers_settings_over_from_the_small_setting(tmp_path):
    # the peers are not tuned at 1,203 classes: each runs the small setting's choice (named
    # there as in its grid, fedloss's |S| 4 renamed), once the small setting has chosen it
    settings = tmp_path / "tuned_icons_1203.json"
    argv = ["--tune", "--variant", "icons_1203", "--methods", "seesaw", "fedloss", "eqlv2",
            "--single-seed", "seesaw", "fedloss", "eqlv2", "--output", str(tmp_path / "out"),
            "--records", str(tmp_path / "runs"), "--settings", str(settings), "--bootstrap", "10"]
    idle = FakeRuns(prefix="lvis_icons_1203")
    with pytest.raises(SystemExit, match=r"no setting chosen for \['seesaw', 'fedloss', 'eqlv2'\]"):
        cli.main(argv, execute=idle)
    assert idle.calls == []
    small = {"variant": "icons_small", "methods": {
        "seesaw": {"chosen": "linear"}, "fedloss": {"chosen": "num_classes4"},
        "eqlv2": {"chosen": None}}}
    (tmp_path / "tuned_icons_small.json").write_text(json.dumps(small))
    fake = FakeRuns(prefix="lvis_icons_1203")
    with pytest.raises(SystemExit, match=r"no setting chosen for \['eqlv2'\]"):
        cli.main(argv, execute=fake)
    assert sorted(fake.calls) == [("fedloss", "num_classes50", 0), ("seesaw", "linear", 0)]
    recorded = json.loads((tmp_path / "runs/icons_1203/seesaw/linear/seed0.json").read_text())
    assert recorded["opts"][:2] == ["MODEL.PEERS.SEESAW.NORMED_LINEAR", "False"]
    data = json.loads(settings.read_text())["methods"]
    assert {m: (v["chosen"], v["carried_over_from"], list(v["settings"]))
            for m, v in data.items()} == {"seesaw": ("linear", "icons_small", ["linear"]),
                                          "fedloss": ("num_classes50", "icons_small",
                                                      ["num_classes50"])}
    table = (tmp_path / "out/icons_1203/results.md").read_text()
    assert "| seesaw | 1 |" in table and "untuned" not in table
    # the report mode reads the carried settings back: no untuned row, no other setting
    report = FakeRuns(prefix="lvis_icons_1203")
    cli.main(["--report", str(settings), "--output", str(tmp_path / "o2"), "--records",
              str(tmp_path / "runs2"), "--bootstrap", "10"], execute=report)
    assert sorted(report.calls) == [("fedloss", "num_classes50", 0), ("seesaw", "linear", 0)]
    assert "untuned" not in (tmp_path / "o2/icons_1203/results.md").read_text()
    # a choice with no counterpart in the 1,203-class grid is named
    small["methods"]["fedloss"]["chosen"] = "num_classes7"
    (tmp_path / "tuned_icons_small.json").write_text(json.dumps(small))
    with pytest.raises(SystemExit, match=r"fedloss's chosen setting 'num_classes7' has no "
                                         r"counterpart in the icons_1203 grid"):
        cli.main(argv, execute=FakeRuns(prefix="lvis_icons_1203"))
