#!/usr/bin/env python
"""
Long-tail benchmark: train and evaluate several methods under the same schedule and seeds, and
write a side-by-side table.

    python tools/benchmark.py --methods baseline lda --seeds 0 1 2 --output output/benchmark
    python tools/benchmark.py --methods lda lda_no_div lda_fixed_alpha lda_b --seeds 0 \
        --output output/ablation SOLVER.MAX_ITER 300     # trailing KEY VALUE pairs: all runs
    python tools/benchmark.py --tune --variant exhaustive --jobs 2   # docs/benchmark_protocol.md
    python tools/benchmark.py --report docs/benchmark/tuned_exhaustive.json --jobs 2

``--tune`` tunes every method on the variant's val split with the same budget, writes the chosen
settings to ``docs/benchmark/tuned_<variant>.json`` and reports them (and the papers' defaults)
on its test split; ``--report`` reports the settings of such a file. Their finished runs' result
files are kept under ``docs/benchmark/runs/`` (tracked), from which they resume
(``tools/benchmark_protocol.py``). Without them:

Each (method, seed) runs in its own process (`train_net.py` with `SEED`) into
``OUTPUT/<method>/seed<seed>/`` and leaves a ``run.json`` there; a run whose ``run.json`` exists
is not trained again, so an interrupted benchmark resumes where it stopped; a run that fails is
reported by name at the end (exit status 1) while the others go on. Runs are started seed by
seed (baseline, lda, ... for seed 0, then seed 1, ...), so slow drifts of the machine touch
every method alike; ``--jobs 2`` runs two at a time (a ``concurrent.futures`` pool) with one
thread each (on a 2-core machine about twice the throughput of one run with two threads).
Every run writes its detections (``TEST.LVIS_EVAL.WRITE_RESULTS_JSON``) for the error analysis;
a finished run keeps ``model_final.pth`` and removes its periodic checkpoints.
Writes:

* ``OUTPUT/results.json``: per method and seed, bbox and segm AP, AP50, APr, APc, APf; seconds
  per training iteration (median of detectron2's per-iteration times, the first 10% of the
  iterations excluded as warm-up); seconds per inference image (from the evaluator's
  ``evaluation_timing.json``: the inference loop's wall time per image without the
  evaluator's own work); peak memory (max RSS of the run's process, and peak CUDA memory on a
  GPU); the config; and the error analysis (``projects_lda/evaluation/analysis.py``): per-class
  AP with the classes' training image counts, the TIDE breakdown (ΔAP50 of classification,
  localisation, both, duplicate, background and missed errors) and what the detections make of
  the ground-truth objects (own class, a confusable class of the same group, another group,
  missed); under ``comparisons``, each method's AP and APr difference from the baseline and
  from LDA of the same seed with a 95% bootstrap confidence interval over validation images;
* ``OUTPUT/results.md``: means and spreads over seeds, each method's difference from the
  baseline, its time ratios against the baseline measured in the same benchmark, and the
  difference, TIDE and confusion tables.
"""
import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's projects_lda and train_net
EMBEDDED = "configs/Embedded"

# name -> (config file relative to the repository, extra config options)
METHODS = {
    "baseline": (f"{EMBEDDED}/mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
    "lda": (f"{EMBEDDED}/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
    # ablations (paper Table 5): empirical risks only (no projection-head losses) ...
    "lda_no_div": (f"{EMBEDDED}/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
                   ["MODEL.LDA.LAMBDA", "0.0"]),
    # ... a fixed alpha instead of the self-adaptive one ...
    "lda_fixed_alpha": (f"{EMBEDDED}/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
                        ["MODEL.LDA.FIXED_ALPHA", "1.0"]),
    # ... and at the adaptive alpha's mean over training (0.12 on seed 0; 0.09-0.12 over 3 seeds)
    "lda_fixed_alpha_mean": (f"{EMBEDDED}/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
                             ["MODEL.LDA.FIXED_ALPHA", "0.12"]),
    # LDA with cosine classifiers (MODEL.LDA.NORMED_LINEAR; not in the paper)
    "lda_cosine": (f"{EMBEDDED}/lda_cosine_mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
    # ... and the balanced classifier alone ("Ours-b"): no L_u, no divergence, alpha = 1
    "lda_b": (f"{EMBEDDED}/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
              ["MODEL.LDA.LOSS_WEIGHT_UNBALANCED", "0.0", "MODEL.LDA.LAMBDA", "0.0",
               "MODEL.LDA.FIXED_ALPHA", "1.0"]),
    # peer long-tail methods (projects_lda/modeling/peers), same detector, data, sampler and schedule
    "fedloss": (f"{EMBEDDED}/fedloss_mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
    "eqlv2": (f"{EMBEDDED}/eqlv2_mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
    "seesaw": (f"{EMBEDDED}/seesaw_mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
    # Seesaw with a plain linear classifier instead of the normalized (cosine) one
    "seesaw_linear": (f"{EMBEDDED}/seesaw_mask_rcnn_R_18_FPN_cpu_embedded.yaml",
                      ["MODEL.PEERS.SEESAW.NORMED_LINEAR", "False"]),
    "balanced_softmax": (
        f"{EMBEDDED}/balanced_softmax_mask_rcnn_R_18_FPN_cpu_embedded.yaml", []),
}
METRICS = ("AP", "AP50", "APr", "APc", "APf")
WARMUP_FRACTION = 0.1

logger = logging.getLogger("benchmark")


# ------------------------------------------------------------------------------ one run
def _median_iter_time(metrics_file):
    rows = []
    with open(metrics_file) as f:
        for line in f:
            row = json.loads(line)
            if "time" in row and "total_loss" in row:
                rows.append(row)
    if not rows:
        return None
    last = max(r["iteration"] for r in rows)
    warm = [r["time"] for r in rows if r["iteration"] >= WARMUP_FRACTION * (last + 1)]
    return statistics.median(warm or [r["time"] for r in rows])


def _inference_time(out_dir):
    """Seconds per test image, from the timing file the evaluator writes (the last test set)."""
    files = sorted(Path(out_dir).glob("inference/*/evaluation_timing.json"),
                   key=lambda f: f.stat().st_mtime)
    return json.loads(files[-1].read_text())["inference_s_per_image"] if files else None


def _group_of(categories):
    """Confusable group of a category of the embedded dataset: the shape in its name
    (``disc_light``, ``disc_medium``, ``disc_dark`` are one group)."""
    groups = {c["id"]: c["name"].rsplit("_", 1)[0] for c in categories}
    return groups.__getitem__


def analyse_run(val_json, results_json, max_dets):
    """Per-class AP, TIDE breakdown and group confusions of one run, per task."""
    from projects_lda.evaluation.analysis import (
        evaluate_results, group_confusions, per_class_ap, tide_breakdown)

    out = {}
    for task in ("bbox", "segm"):
        gt, ev = evaluate_results(val_json, results_json, task, max_dets)
        cats = gt.load_cats(gt.get_cat_ids())
        out[task] = {
            "per_class_ap": per_class_ap(gt, ev),
            "tide": tide_breakdown(ev),
            "group_confusions": group_confusions(ev, _group_of(cats)),
        }
    out["class_image_count"] = {c["id"]: c.get("image_count") for c in cats}
    out["class_frequency"] = {c["id"]: c.get("frequency") for c in cats}
    return out


def run_one(config_file, out_dir, seed, opts):
    """Trains and evaluates in this process; writes out_dir/run.json (used by the child)."""
    import torch

    from detectron2.data import MetadataCatalog

    import train_net
    from projects_lda import get_project_cfg
    from projects_lda.evaluation.lvis_evaluation import RESULTS_JSON

    args = argparse.Namespace(
        config_file=config_file, eval_only=False, resume=True, num_gpus=1,
        # the detections JSON: the error analysis and the bootstrap read it
        opts=list(opts) + ["SEED", str(seed), "OUTPUT_DIR", str(out_dir),
                           "TEST.LVIS_EVAL.WRITE_RESULTS_JSON", "True"],
    )
    start = time.perf_counter()
    results = train_net.main(args)
    wall = time.perf_counter() - start
    if not results:
        raise RuntimeError(f"{out_dir}: training produced no evaluation results")
    cfg = get_project_cfg()
    cfg.merge_from_file(str(Path(out_dir) / "config.yaml"))  # as the run wrote it
    # several test sets (the tuning protocol: val, then test): detectron2 keys the results by
    # dataset; the record's metrics and analysis are the last set's (the reported one)
    test_sets = list(cfg.DATASETS.TEST)
    per_set = results if len(test_sets) > 1 else {test_sets[0]: results}
    test_set = test_sets[-1]
    results = per_set[test_set]
    for name, r in per_set.items():
        missing = [task for task in ("bbox", "segm") if task not in r]
        if missing:  # detectron2's LVIS evaluation skips segm when there is no detection at all
            raise RuntimeError(f"{out_dir}: no {'/'.join(missing)} results on {name} (the model "
                               "made no detection; see TEST.DETECTIONS_PER_IMAGE and "
                               "MODEL.ROI_HEADS.SCORE_THRESH_TEST)")
    results_json = Path(out_dir) / "inference" / test_set / RESULTS_JSON
    val_json = MetadataCatalog.get(test_set).json_file
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    record = {
        "seed": seed,
        "config_file": config_file,
        "opts": list(opts),
        "config": (Path(out_dir) / "config.yaml").read_text(),
        **{task: {k: results[task][k] for k in METRICS} for task in ("bbox", "segm")},
        "splits": {name: {task: {k: r[task][k] for k in METRICS} for task in ("bbox", "segm")}
                   for name, r in per_set.items()},
        "test_set": test_set,
        "sec_per_iter": _median_iter_time(Path(out_dir) / "metrics.json"),
        "sec_per_image": _inference_time(out_dir),
        "peak_rss_mb": peak_kb / 1024.0,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available() else None,
        "wall_seconds": wall,
        "val_json": val_json,
        "results_json": str(results_json),
        "max_dets_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
    }
    try:  # the analysis must not cost the training: a failure is recorded, the run kept
        record["analysis"] = analyse_run(val_json, results_json, cfg.TEST.DETECTIONS_PER_IMAGE)
    except Exception as e:  # noqa: BLE001
        logger.warning("%s: error analysis failed: %s", out_dir, e)
        record["analysis_error"] = f"{type(e).__name__}: {e}"
    tmp = Path(out_dir) / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, Path(out_dir) / "run.json")  # written last: marks the run as finished
    # a finished run keeps model_final.pth only: its periodic checkpoints (0.1 GB each here,
    # 24-30 runs per protocol variant) serve only to resume a run, and this one is finished
    for ckpt in Path(out_dir).glob("model_[0-9]*.pth"):
        ckpt.unlink()


# ------------------------------------------------------------------------------ table
def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results, baseline="baseline"):
    """results: {method: {seed: run record}} -> {method: {key: (mean, std)}}"""
    summary = {}
    for method, runs in results.items():
        rows = list(runs.values())
        s = {"seeds": len(rows)}
        for task in ("bbox", "segm"):
            for k in METRICS:
                s[f"{task}/{k}"] = _mean_std([r[task][k] for r in rows])
        for k in ("sec_per_iter", "sec_per_image", "peak_rss_mb"):
            s[k] = _mean_std([r.get(k) for r in rows])
        summary[method] = s
    return summary


def _fmt(mean_std, digits=1):
    mean, std = mean_std
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(summary, baseline="baseline"):
    base = summary.get(baseline)
    lines = []
    for task in ("bbox", "segm"):
        head = ["method", "seeds"] + [f"{task} {k}" for k in METRICS]
        if base:
            head += [f"Δ{k}" for k in ("AP", "APr")]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, s in summary.items():
            row = [method, str(s["seeds"])] + [_fmt(s[f"{task}/{k}"]) for k in METRICS]
            if base:
                for k in ("AP", "APr"):
                    row.append(f"{s[f'{task}/{k}'][0] - base[f'{task}/{k}'][0]:+.1f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    head = ["method", "s / train iter", "s / test image", "peak RSS (MB)"]
    if base:
        head += ["train time ratio", "test time ratio"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, s in summary.items():
        row = [method, _fmt(s["sec_per_iter"], 3), _fmt(s["sec_per_image"], 3),
               _fmt(s["peak_rss_mb"], 0)]
        if base:
            for k in ("sec_per_iter", "sec_per_image"):
                m, b = s[k][0], base[k][0]
                row.append(f"{m / b:.2f}x" if m is not None and b else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ analysis
CI_METRICS = ("AP", "APr")


def compare_runs(results, references, n_bootstrap, seed=0):
    """
    {reference: {method: {seed: {task: {metric: (difference, lower, upper)}}}}}: each method's
    AP difference from each reference run of the same seed, with a 95% bootstrap CI over the
    validation images (both evaluations resampled with the same images).
    """
    from projects_lda.evaluation.analysis import bootstrap_difference, evaluate_results

    cache = {}

    def evaluation(method, s, task):
        if (method, s, task) not in cache:
            run = results[method][s]
            cache[method, s, task] = evaluate_results(
                run["val_json"], run["results_json"], task, run.get("max_dets_per_image", 300))[1]
        return cache[method, s, task]

    out = {}
    for ref in references:
        for method, runs in results.items():
            if method == ref:
                continue
            for s, run in runs.items():
                if s not in results[ref] or "results_json" not in run or \
                        "results_json" not in results[ref][s]:
                    continue
                try:
                    out.setdefault(ref, {}).setdefault(method, {})[s] = {
                        task: bootstrap_difference(evaluation(ref, s, task),
                                                   evaluation(method, s, task), CI_METRICS,
                                                   n_bootstrap, seed)
                        for task in ("bbox", "segm")}
                except Exception as e:  # noqa: BLE001  (the table shows "-")
                    logger.warning("%s vs %s seed %s: no bootstrap (%s)", method, ref, s, e)
    return out


def analysis_tables(results, comparisons, references):
    """Markdown: differences with CIs, TIDE breakdown and group confusions (first seed)."""
    lines = []
    for task in ("bbox", "segm"):
        head = ["method", "seed"] + [f"{task} Δ{m} vs {ref} [95% CI]"
                                     for ref in references for m in CI_METRICS]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, runs in results.items():
            for s in runs:
                cells = []
                for ref in references:
                    d = comparisons.get(ref, {}).get(method, {}).get(s, {}).get(task)
                    for m in CI_METRICS:
                        cells.append("-" if d is None else
                                     f"{d[m][0]:+.1f} [{d[m][1]:+.1f}, {d[m][2]:+.1f}]")
                lines.append("| " + " | ".join([method, str(s)] + cells) + " |")
        lines.append("")
    errors = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
    for task in ("bbox", "segm"):
        head = ["method", "seed", f"{task} AP50"] + [f"ΔAP50 {e}" for e in errors] + \
               ["objects: own class %", "group sibling %", "other group %", "missed %"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, runs in results.items():
            for s, run in runs.items():
                a = run.get("analysis", {}).get(task)
                if a is None:
                    continue
                t, g = a["tide"], a["group_confusions"] or {}
                row = [method, str(s), f"{t['ap50']:.1f}"] + \
                      [f"{t['delta_ap'][e]:.1f}" for e in errors] + \
                      [f"{g.get(k, float('nan')):.1f}" for k in
                       ("own_class", "group_sibling", "other_group", "missed")]
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ protocol
def _run_subprocess(label, run_dir, cmd, env):
    run_dir.mkdir(parents=True, exist_ok=True)
    logger.info("%s: training into %s", label, run_dir)
    with open(run_dir / "stdout.txt", "ab") as log:
        return subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode


def protocol_main(args, execute=None):
    """``--tune`` / ``--report``: the tuning protocol (tools/benchmark_protocol.py).

    ``execute(method, setting, seed, opts, run_dir) -> record or None`` trains one run (tests
    pass a fake one); by default a ``--run-one`` child process."""
    import benchmark_protocol as bp

    if args.tune and args.report:
        raise SystemExit("--tune and --report exclude each other")
    if args.report:
        variant, grids, chosen = bp.read_settings_file(args.report)
        settings_file = None
    else:
        variant, chosen = args.variant, None
        names = args.methods or list(bp.GRIDS)
        unknown = [m for m in names if m not in bp.GRIDS]
        if unknown:
            raise SystemExit(f"--methods: no tuning grid for {unknown}; known: {list(bp.GRIDS)}")
        grids = {m: bp.GRIDS[m] for m in names}
        settings_file = args.settings or ROOT / "docs" / "benchmark" / f"tuned_{variant}.json"
    if args.methods and args.report:
        grids = {m: g for m, g in grids.items() if m in args.methods}
        chosen = {m: chosen[m] for m in grids}
    base_opts = bp.variant_opts(variant)
    out = Path(args.output) / variant
    env = dict(os.environ)
    if args.jobs > 1:  # one intra-op thread per run: oversubscribed OpenMP threads crawl
        env.setdefault("OMP_NUM_THREADS", "1")

    def opts_of(method, setting):
        return [*METHODS[method][1], *dict(grids[method])[setting], *base_opts, *args.opts]

    def subprocess_execute(method, setting, seed, opts, run_dir):
        cmd = [sys.executable, __file__, "--run-one", METHODS[method][0], str(run_dir),
               str(seed), *opts]
        code = _run_subprocess(f"{method} {setting} seed {seed}", run_dir, cmd, env)
        if code != 0:
            logger.error("%s %s seed %d failed (exit %d); see %s", method, setting, seed, code,
                         run_dir / "stdout.txt")
            return None
        return json.loads((run_dir / "run.json").read_text())

    execute = execute or subprocess_execute

    def run(method, setting, seed):
        opts = opts_of(method, setting)
        run_dir = out / method / setting / f"seed{seed}"
        finished = run_dir / "run.json"
        if finished.is_file():  # finished before its record was copied
            record = json.loads(finished.read_text())
            if record.get("opts") == opts:
                return record
            finished.unlink()  # made with other options: train again
        return execute(method, setting, seed, opts, run_dir)

    done, picked, failed = bp.run_protocol(
        variant=variant, grids=grids, records=args.records, settings_file=settings_file,
        execute=run, opts_of=opts_of, jobs=args.jobs, chosen=chosen)
    if settings_file:
        logger.info("chosen settings: %s (written to %s)", picked, settings_file)
    results = {}
    for method, setting in picked.items():
        untuned = grids[method][0][0]
        for label, name, seeds in ((method, setting, bp.REPORT_SEEDS),
                                   (f"{method} (untuned: {untuned})", untuned, bp.UNTUNED_SEEDS)):
            for seed in seeds:
                if (method, name, seed) in done:
                    results.setdefault(label, {})[seed] = done[method, name, seed]
    table = _write_report(results, args, Path(args.records) / variant, out)
    print(table)
    undecided = [m for m in grids if m not in picked]
    if failed or undecided:
        raise SystemExit("runs failed: " + "; ".join(f"{m} {s} seed {k}" for m, s, k in failed)
                         + (f"; no setting chosen for {undecided}" if undecided else ""))
    return results


def _write_report(results, args, report_dir, out):
    """results.md / results.json of the report (test split) into the tracked folder and out."""
    summary = summarize(results, args.baseline)
    references = [r for r in (args.baseline, "lda") if r in results]
    comparisons = compare_runs(results, references, args.bootstrap)
    table = markdown_table(summary, args.baseline if args.baseline in summary else None)
    table += "\n" + analysis_tables(results, comparisons, references)
    for folder in (out, report_dir):
        folder.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"runs": results, "summary": summary, "baseline": args.baseline,
         "comparisons": comparisons}, indent=2))
    # the tracked copy: the runs are in their own files next to it
    (report_dir / "results.json").write_text(json.dumps(
        {"summary": summary, "baseline": args.baseline, "comparisons": comparisons}, indent=2))
    for folder in (out, report_dir):
        (folder / "results.md").write_text(table)
    return table


# ------------------------------------------------------------------------------ driver
def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"among {sorted(METHODS)}, or NAME=CONFIG.yaml (default: baseline "
                        "lda; with --tune: the six methods of the protocol)")
    protocol = parser.add_argument_group(
        "tuning protocol (docs/benchmark_protocol.md)")
    protocol.add_argument("--tune", action="store_true",
                          help="tune every method on the variant's val split (grids of "
                          "tools/benchmark_protocol.py), write the chosen settings to "
                          "--settings, then report the chosen and the paper-default settings "
                          "on its test split")
    protocol.add_argument("--report", metavar="SETTINGS_JSON",
                          help="report the settings chosen in this file (written by --tune)")
    protocol.add_argument("--variant", default="exhaustive",
                          help="embedded dataset variant: exhaustive or federated")
    protocol.add_argument("--settings", default=None,
                          help="settings file --tune writes (default: "
                          "docs/benchmark/tuned_<variant>.json)")
    protocol.add_argument("--records", default=str(ROOT / "docs" / "benchmark" / "runs"),
                          help="folder of the finished runs' result files (tracked by git: the "
                          "protocol resumes from them)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="output/benchmark")
    parser.add_argument("--baseline", default="baseline", help="method the others are compared to")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (each with OMP_NUM_THREADS=1 when > 1); timings "
                        "are then measured under that shared load, for every method alike")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap samples (over val images) of the CIs of AP differences")
    parser.add_argument("--run-one", nargs=3, metavar=("CONFIG", "OUT_DIR", "SEED"),
                        help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def resolve_method(spec):
    if "=" in spec:
        name, config = spec.split("=", 1)
        if not (ROOT / config).is_file() and not Path(config).is_file():
            raise SystemExit(f"--methods {spec}: config file not found: {config}")
        return name, (config, [])
    if spec not in METHODS:
        raise SystemExit(f"--methods: unknown method {spec!r}; known: {sorted(METHODS)}")
    return spec, METHODS[spec]


def collect(output, methods, seeds):
    results = {}
    for name in methods:
        for seed in seeds:
            f = Path(output) / name / f"seed{seed}" / "run.json"
            if f.is_file():
                results.setdefault(name, {})[seed] = json.loads(f.read_text())
    return results


def main(argv=None, execute=None):
    args = get_parser().parse_args(argv)
    if args.run_one:
        config, out_dir, seed = args.run_one
        run_one(config, out_dir, int(seed), args.opts)
        return
    logging.basicConfig(level=logging.INFO, format="[benchmark] %(message)s")
    if args.tune or args.report:
        return protocol_main(args, execute)
    methods = dict(resolve_method(m) for m in args.methods or ["baseline", "lda"])
    out = Path(args.output)
    pending = []
    for seed in args.seeds:
        for name, (config, extra) in methods.items():
            run_dir = out / name / f"seed{seed}"
            if (run_dir / "run.json").is_file():
                logger.info("%s seed %d: done before, kept", name, seed)
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, __file__, "--run-one", config, str(run_dir), str(seed),
                   *extra, *args.opts]
            pending.append((f"{name} seed {seed}", run_dir, cmd))
    env = dict(os.environ)
    if args.jobs > 1:  # one intra-op thread per run: oversubscribed OpenMP threads crawl
        env.setdefault("OMP_NUM_THREADS", "1")

    def train(label, run_dir, cmd):
        logger.info("%s: training into %s", label, run_dir)
        with open(run_dir / "stdout.txt", "ab") as log:
            return subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode

    failed = []
    # the pool starts runs in the order submitted (seed by seed); a free slot takes the next
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(train, *p): p for p in pending}
        for future in as_completed(futures):
            label, run_dir, _ = futures[future]
            code = future.result()
            if code != 0:  # keep going: the other runs are still worth having
                logger.error("%s failed (exit %d); see %s", label, code, run_dir / "stdout.txt")
                failed.append((label, f"{label} (exit {code}, {run_dir / 'stdout.txt'})"))
    failed = [text for _, text in sorted(failed)]
    results = collect(out, methods, args.seeds)
    summary = summarize(results, args.baseline)
    references = [r for r in (args.baseline, "lda") if r in results]
    comparisons = compare_runs(results, references, args.bootstrap)
    (out / "results.json").write_text(json.dumps(
        {"runs": results, "summary": summary, "baseline": args.baseline,
         "comparisons": comparisons}, indent=2))
    table = markdown_table(summary, args.baseline if args.baseline in summary else None)
    table += "\n" + analysis_tables(results, comparisons, references)
    (out / "results.md").write_text(table)
    print(table)
    if failed:
        raise SystemExit("runs failed, left out of the table: " + "; ".join(failed))


if __name__ == "__main__":
    main()
