"""
Long-tail benchmark: train and evaluate several methods under the same schedule and seeds, and
write a side-by-side table.

    python tools/benchmark.py --methods baseline lda --seeds 0 1 2 --output output/benchmark
    python tools/benchmark.py --methods lda lda_no_div lda_fixed_alpha lda_b --seeds 0 \\
        --output output/ablation SOLVER.MAX_ITER 300     # trailing KEY VALUE pairs: all runs
    python tools/benchmark.py --tune --variant exhaustive --jobs 2   # docs/benchmark_protocol.md
    python tools/benchmark.py --report docs/benchmark/tuned_exhaustive.json --jobs 2
    python tools/benchmark.py --tune --variant many_class --jobs 2 \\
        --single-seed eqlv2 fedloss balanced_softmax      # docs/benchmark_many_class.md

``--tune`` tunes every method on the variant's val split with the same budget, writes the chosen
settings to ``docs/benchmark/tuned_<variant>.json`` and reports them (and the papers' defaults)
on its test split; ``--report`` reports the settings of such a file. Their finished runs' result
files are kept under ``docs/benchmark/runs/`` (tracked), from which they resume
(:mod:`projects_lda.benchmark.protocol`). Without them:

Each (method, seed) runs in its own process (:mod:`projects_lda.benchmark.runs`, ``SEED`` set)
into ``OUTPUT/<method>/seed<seed>/`` and leaves a ``run.json`` there; a run whose ``run.json``
exists is not trained again, so an interrupted benchmark resumes where it stopped; a run that
fails is reported by name at the end (exit status 1) while the others go on. Runs are started
seed by seed (baseline, lda, ... for seed 0, then seed 1, ...), so slow drifts of the machine
touch every method alike; ``--jobs 2`` runs two at a time (a ``concurrent.futures`` pool) with
one thread each (on a 2-core machine about twice the throughput of one run with two threads).
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
  missed), and each class's number of detections; for LDA runs, ``lda_stats`` (alpha over
  training, the accuracies, beta's range, the loss terms: ``plot_analysis.lda_stats``); under
  ``comparisons``, each method's AP and APr difference from the baseline and
  from LDA of the same seed with a 95% bootstrap confidence interval over the evaluated
  split's images (the last of DATASETS.TEST: the test split in the protocol), with the two
  records' fingerprints (``report.run_fingerprint``) and the bootstrap's size and seed;
* ``OUTPUT/results.md``: means and spreads over seeds, each method's difference from the
  baseline, its time ratios against the baseline measured in the same benchmark, the
  difference, TIDE and confusion tables, the classes never predicted (and at AP 0) by
  frequency group, and LDA's inner workings.
"""
import argparse
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .protocol import tune_or_report
from .report import build_report, write_report
from .runs import (METHODS, child_env, collect, resolve_method, run_lock,
                   train_in_subprocess)

logger = logging.getLogger("benchmark")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"among {sorted(METHODS)}, or NAME=CONFIG.yaml (default: baseline "
                        "lda; with --tune: the six methods of the protocol)")
    protocol = parser.add_argument_group(
        "tuning protocol (docs/benchmark_protocol.md)")
    protocol.add_argument("--tune", action="store_true",
                          help="tune every method on the variant's val split (grids of "
                          "projects_lda/benchmark/protocol.py), write the chosen settings to "
                          "--settings, then report the chosen and the paper-default settings "
                          "on its test split")
    protocol.add_argument("--report", metavar="SETTINGS_JSON",
                          help="report the settings chosen in this file (written by --tune)")
    protocol.add_argument("--variant", default="exhaustive",
                          help="dataset variant: exhaustive, federated, many_class, icons_small "
                          "or icons_1203 (projects_lda/benchmark/protocol.py's VARIANTS)")
    protocol.add_argument("--single-seed", nargs="+", default=[], metavar="METHOD",
                          help="with --tune: these methods are reported with seed 0 only (kept "
                          "in the settings file), where three seeds of every method do not fit "
                          "the time")
    protocol.add_argument("--finished-only", action="store_true",
                          help="with --tune or --report: train nothing; tabulate the runs "
                          "already recorded (the protocol so far, e.g. while it runs "
                          "elsewhere), in --output only: the settings file and the tracked "
                          "results.md stay the protocol's")
    protocol.add_argument("--settings", default=None,
                          help="settings file --tune writes (default: "
                          "docs/benchmark/tuned_<variant>.json)")
    protocol.add_argument("--records", default=None,
                          help="folder of the finished runs' result files (tracked by git: the "
                          "protocol resumes from them; default: docs/benchmark/runs of the "
                          "checkout)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="output/benchmark")
    parser.add_argument("--baseline", default="baseline", help="method the others are compared to")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (each with OMP_NUM_THREADS=1 when > 1); timings "
                        "are then measured under that shared load, for every method alike; "
                        "also the processes of the report's AP-fixed / AP-pool bootstrap")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap samples (over the images of the split reported, the test "
                        "split in the protocol) of the CIs of AP differences")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def benchmark(args, root="."):
    """Trains the runs of ``args.methods`` x ``args.seeds`` not finished yet (configs of the
    checkout ``root``), then writes and prints the tables; raises SystemExit naming the runs
    that failed."""
    methods = dict(resolve_method(m, root) for m in args.methods or ["baseline", "lda"])
    out = Path(args.output)
    pending = []
    for seed in args.seeds:
        for name, (config, extra) in methods.items():
            run_dir = out / name / f"seed{seed}"
            if (run_dir / "run.json").is_file():
                logger.info("%s seed %d: done before, kept", name, seed)
                continue
            pending.append((f"{name} seed {seed}", run_dir, config, seed, [*extra, *args.opts]))
    env = child_env(args.jobs)
    failed = []

    def train(label, run_dir, *rest):
        """Why the run did not finish ("" when it did)."""
        with run_lock(run_dir) as holder:
            if holder is not None:
                return f"{label} (trained by another command, pid {holder})"
            code = train_in_subprocess(label, run_dir, *rest, env, root)
            return f"{label} (exit {code}, {run_dir / 'stdout.txt'})" if code else ""

    # the pool starts runs in the order submitted (seed by seed); a free slot takes the next
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(train, *p): p for p in pending}
        for future in as_completed(futures):
            why = future.result()
            if why:  # keep going: the other runs are still worth having
                logger.error("%s", why)
                failed.append((futures[future][0], why))
    failed = [text for _, text in sorted(failed)]
    table, data = build_report(collect(out, methods, args.seeds), args.baseline, args.bootstrap,
                               args.jobs)
    write_report(out, table, data)
    print(table)
    if failed:
        raise SystemExit("runs failed, left out of the table: " + "; ".join(failed))


def main(argv=None, execute=None, root="."):
    """``tools/benchmark.py``, on the configs and records of the checkout ``root``;
    ``execute``: see :func:`~.protocol.tune_or_report`."""
    args = get_parser().parse_args(argv)
    if args.records is None:
        args.records = str(Path(root) / "docs" / "benchmark" / "runs")
    logging.basicConfig(level=logging.INFO, format="[benchmark] %(message)s")
    if args.tune or args.report:
        return tune_or_report(args, execute, root)
    if args.finished_only:
        raise SystemExit("--finished-only goes with --tune or --report")
    return benchmark(args, root)
