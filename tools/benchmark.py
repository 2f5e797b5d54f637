#!/usr/bin/env python
"""
Long-tail benchmark: train and evaluate several methods under the same schedule and seeds, and
write a side-by-side table.

    python tools/benchmark.py --methods baseline lda --seeds 0 1 2 --output output/benchmark
    python tools/benchmark.py --methods lda lda_no_div lda_fixed_alpha lda_b --seeds 0 \
        --output output/ablation SOLVER.MAX_ITER 300     # trailing KEY VALUE pairs: all runs

Each (method, seed) runs in its own process (`train_net.py` with `SEED`) into
``OUTPUT/<method>/seed<seed>/`` and leaves a ``run.json`` there; a run whose ``run.json`` exists
is not trained again, so an interrupted benchmark resumes where it stopped; a run that fails is
reported by name at the end (exit status 1) while the others go on. Runs are ordered
seed by seed (baseline, lda, ... for seed 0, then seed 1, ...), so slow drifts of the machine
touch every method alike; ``--jobs 2`` runs two at a time with one thread each (on a 2-core
machine about twice the throughput of one run with two threads). Writes:

* ``OUTPUT/results.json``: per method and seed, bbox and segm AP, AP50, APr, APc, APf; seconds
  per training iteration (median of detectron2's per-iteration times, the first 10% of the
  iterations excluded as warm-up); seconds per inference image (detectron2's "pure compute"
  time); peak memory (max RSS of the run's process, and peak CUDA memory on a GPU); the config;
* ``OUTPUT/results.md``: means and spreads over seeds, each method's difference from the
  baseline, and its time ratios against the baseline measured in the same benchmark.
"""
import argparse
import json
import logging
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


_INFER_RE = re.compile(r"Total inference pure compute time: \S+ \(([0-9.]+) s / iter per device")


def _inference_time(log_file):
    found = _INFER_RE.findall(Path(log_file).read_text()) if Path(log_file).is_file() else []
    return float(found[-1]) if found else None


def run_one(config_file, out_dir, seed, opts):
    """Trains and evaluates in this process; writes out_dir/run.json (used by the child)."""
    sys.path.insert(0, str(ROOT))
    import torch

    import train_net

    args = argparse.Namespace(
        config_file=config_file, eval_only=False, resume=True, num_gpus=1,
        opts=list(opts) + ["SEED", str(seed), "OUTPUT_DIR", str(out_dir)],
    )
    start = time.perf_counter()
    results = train_net.main(args)
    wall = time.perf_counter() - start
    if not results:
        raise RuntimeError(f"{out_dir}: training produced no evaluation results")
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
        "sec_per_iter": _median_iter_time(Path(out_dir) / "metrics.json"),
        "sec_per_image": _inference_time(Path(out_dir) / "log.txt"),
        "peak_rss_mb": peak_kb / 1024.0,
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available() else None,
        "wall_seconds": wall,
    }
    tmp = Path(out_dir) / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, Path(out_dir) / "run.json")  # written last: marks the run as finished


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


# ------------------------------------------------------------------------------ driver
def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["baseline", "lda"],
                        help=f"among {sorted(METHODS)}, or NAME=CONFIG.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="output/benchmark")
    parser.add_argument("--baseline", default="baseline", help="method the others are compared to")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (each with OMP_NUM_THREADS=1 when > 1); timings "
                        "are then measured under that shared load, for every method alike")
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


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.run_one:
        config, out_dir, seed = args.run_one
        run_one(config, out_dir, int(seed), args.opts)
        return
    logging.basicConfig(level=logging.INFO, format="[benchmark] %(message)s")
    methods = dict(resolve_method(m) for m in args.methods)
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
    running, failed = [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            label, run_dir, cmd = pending.pop(0)
            logger.info("%s: training into %s", label, run_dir)
            log = open(run_dir / "stdout.txt", "ab")
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
            running.append((label, run_dir, proc, log))
        done = [r for r in running if r[2].poll() is not None]
        if not done:
            time.sleep(1.0)
            continue
        for label, run_dir, proc, log in done:  # whichever finished first frees its slot
            running.remove((label, run_dir, proc, log))
            log.close()
            if proc.returncode != 0:  # keep going: the other runs are still worth having
                logger.error("%s failed (exit %d); see %s", label, proc.returncode,
                             run_dir / "stdout.txt")
                failed.append(f"{label} (exit {proc.returncode}, {run_dir / 'stdout.txt'})")
    results = collect(out, methods, args.seeds)
    summary = summarize(results, args.baseline)
    (out / "results.json").write_text(json.dumps(
        {"runs": results, "summary": summary, "baseline": args.baseline}, indent=2))
    table = markdown_table(summary, args.baseline if args.baseline in summary else None)
    (out / "results.md").write_text(table)
    print(table)
    if failed:
        raise SystemExit("runs failed, left out of the table: " + "; ".join(failed))


if __name__ == "__main__":
    main()
