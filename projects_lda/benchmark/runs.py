"""
One run of the long-tail benchmark: a method's config trained and evaluated with one seed, in a
process of its own (``python -m projects_lda.benchmark.runs CONFIG OUT_DIR SEED [KEY VALUE ...]``),
which leaves its record in ``OUT_DIR/run.json``.
"""
import argparse
import contextlib
import fcntl
import json
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from detectron2.data import MetadataCatalog

from ..config import get_project_cfg
from ..app import train
from ..engine.checkpoint import last_checkpoint_name
from ..evaluation.analysis import evaluate_results, group_confusions, per_class_ap, tide_breakdown
from ..evaluation.lvis_evaluation import MATCH_RECORDS, RESULTS_JSON
from ..evaluation.report import sibling_groups

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
    # peer long-tail methods (projects_lda/modeling/peers), same detector, data, sampler
    # and schedule
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
# kept too when the run computed them (TEST.LVIS_EVAL.METRICS: docs/evaluation.md)
LARGE_VOCAB_METRICS = ("AP-fixed", "APr-fixed", "APc-fixed", "APf-fixed",
                       "AP-pool", "APr-pool", "APc-pool", "APf-pool")
WARMUP_FRACTION = 0.1
# Where a run's files lie on the machine that trained it (its detections, match records and
# ground truth): in its run.json beside them, left out of the records the protocol commits
# (:func:`shareable_record`) and read back from run.json where that folder is on this machine
# (:func:`with_location`): the bootstrap intervals need the detections.
LOCATION_KEYS = ("results_json", "val_json", "match_records")
_OUTPUT_DIR_LINE = re.compile(r"^OUTPUT_DIR:.*\n", re.MULTILINE)


def _metrics(task_results):
    """The metrics a record keeps of one task's results: METRICS, and the large-vocabulary
    ones where they were computed."""
    return {k: task_results[k] for k in METRICS + LARGE_VOCAB_METRICS
            if k in METRICS or k in task_results}

logger = logging.getLogger("benchmark")


def resolve_method(spec, root="."):
    """``NAME`` of :data:`METHODS` or ``NAME=CONFIG.yaml`` -> (name, (config, extra options))."""
    if "=" in spec:
        name, config = spec.split("=", 1)
        if not (Path(root) / config).is_file() and not Path(config).is_file():
            raise SystemExit(f"--methods {spec}: config file not found: {config}")
        return name, (config, [])
    if spec not in METHODS:
        raise SystemExit(f"--methods: unknown method {spec!r}; known: {sorted(METHODS)}")
    return spec, METHODS[spec]


def median_iter_time(metrics_file):
    """Median seconds per training iteration in detectron2's metrics.json, the first
    :data:`WARMUP_FRACTION` of the iterations left out as warm-up."""
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


def inference_time(out_dir):
    """Seconds per test image, from the timing file the evaluator writes (the last test set)."""
    files = sorted(Path(out_dir).glob("inference/*/evaluation_timing.json"),
                   key=lambda f: f.stat().st_mtime)
    return json.loads(files[-1].read_text())["inference_s_per_image"] if files else None


def top_per_image(rows, k):
    """The ``k`` highest-scoring of each image's result rows (all when ``k`` < 0): what a
    per-image cap of ``k`` keeps of a model that emits more."""
    by_image = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r)
    return [r for image_rows in by_image.values()
            for r in sorted(image_rows, key=lambda r: -r["score"])[: k if k >= 0 else None]]


def analyse_run(val_json, results_json, max_dets):
    """Per-class AP, TIDE breakdown and group confusions of one run, per task."""
    with open(results_json) as f:  # read once: both tasks and the counts below use it
        rows = json.load(f)
    out = {}
    for task in ("bbox", "segm"):
        gt, ev = evaluate_results(val_json, rows, task, max_dets)
        cats = gt.load_cats(gt.get_cat_ids())
        out[task] = {
            "per_class_ap": per_class_ap(gt, ev),
            "tide": tide_breakdown(ev),
            "group_confusions": group_confusions(ev, sibling_groups(cats)),
        }
    out["class_image_count"] = {c["id"]: c.get("image_count") for c in cats}
    out["class_frequency"] = {c["id"]: c.get("frequency") for c in cats}
    # how often each class is predicted within the standard AP's per-image cap: a class a model
    # never outputs there (its scores always below the others') shows here, not in an AP of 0
    counts = Counter(r["category_id"] for r in top_per_image(rows, max_dets))
    out["detections_per_class"] = {c["id"]: counts.get(c["id"], 0) for c in cats}
    return out


def run_one(config_file, out_dir, seed, opts):
    """Trains and evaluates in this process; writes out_dir/run.json last."""
    args = argparse.Namespace(
        config_file=config_file, eval_only=False, resume=True, num_gpus=1,
        # the detections JSON: the error analysis and the bootstrap read it
        opts=list(opts) + ["SEED", str(seed), "OUTPUT_DIR", str(out_dir),
                           "TEST.LVIS_EVAL.WRITE_RESULTS_JSON", "True"],
    )
    # a run interrupted earlier goes on from its last checkpoint: its wall time below is this
    # process's only, so the record says where it started
    resumed_from = last_checkpoint_name(out_dir)
    start = time.perf_counter()
    results = train.main(args)
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
        **{task: _metrics(results[task]) for task in ("bbox", "segm")},
        "splits": {name: {task: _metrics(r[task]) for task in ("bbox", "segm")}
                   for name, r in per_set.items()},
        "test_set": test_set,
        "sec_per_iter": median_iter_time(Path(out_dir) / "metrics.json"),
        "sec_per_image": inference_time(out_dir),
        "peak_rss_mb": peak_kb / 1024.0,
        "timing_conditions": timing_conditions(),
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20
        if torch.cuda.is_available() else None,
        "wall_seconds": wall,
        "resumed_from": resumed_from,
        "val_json": val_json,
        "results_json": str(results_json),
        # AP-fixed / AP-pool runs: their kept match records, for the bootstrap intervals
        "match_records": {task: str(results_json.parent / MATCH_RECORDS.format(task=task))
                          for task in ("bbox", "segm")
                          if (results_json.parent / MATCH_RECORDS.format(task=task)).is_file()},
        "max_dets_per_image": cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE,
    }
    try:  # the analysis must not cost the training: a failure is recorded, the run kept
        record["analysis"] = analyse_run(val_json, results_json,
                                         cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE)
    except Exception as e:  # noqa: BLE001
        logger.warning("%s: error analysis failed: %s", out_dir, e)
        record["analysis_error"] = f"{type(e).__name__}: {e}"
    if cfg.MODEL.ROI_HEADS.NAME == "LDAROIHeads":
        # LDA's inner workings (alpha, the accuracies, beta, the loss terms) kept with the
        # record: the run folder with its metrics.json is not tracked, the record is
        from .plot_analysis import lda_stats

        try:  # as the analysis: a failure is recorded, the run kept (SystemExit: no LDA rows)
            record["lda_stats"] = lda_stats(out_dir)
        except (Exception, SystemExit) as e:  # noqa: BLE001
            logger.warning("%s: lda_stats failed: %s", out_dir, e)
            record["lda_stats_error"] = f"{type(e).__name__}: {e}"
    tmp = Path(out_dir) / "run.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, Path(out_dir) / "run.json")  # written last: marks the run as finished
    # a finished run keeps model_final.pth only: its periodic checkpoints (0.1 GB each here,
    # 24-30 runs per protocol variant) serve only to resume a run, and this one is finished
    for ckpt in Path(out_dir).glob("model_[0-9]*.pth"):
        ckpt.unlink()


# how many runs the benchmark command lets share the machine (its ``--jobs``), told to each run
# process so that its record says under what conditions its times were measured
JOBS_ENV = "LDA_BENCHMARK_JOBS"


def child_env(jobs):
    """The environment of the run processes: one intra-op thread each when several run at a
    time (oversubscribed OpenMP threads crawl), and ``--jobs`` in :data:`JOBS_ENV`."""
    env = dict(os.environ)
    if jobs > 1:
        env.setdefault("OMP_NUM_THREADS", "1")
    env[JOBS_ENV] = str(jobs)
    return env


def timing_conditions():
    """What this process's times depend on besides the model: torch's intra-op threads and the
    runs allowed at a time (``--jobs``; 1 outside the benchmark command)."""
    return {"threads": torch.get_num_threads(), "jobs": int(os.environ.get(JOBS_ENV) or 1)}


@contextlib.contextmanager
def run_lock(run_dir):
    """
    Holds ``<run_dir>.lock`` while a run is prepared, trained and evaluated, so that two
    benchmark commands (side by side, or one started twice) never train into, move or
    re-evaluate one run folder at once. Yields None when this command holds it, else the pid
    written there by the command that does. An ``flock``: the system releases it when its
    process ends, however it ends, so a killed command leaves nothing to clean up.
    """
    path = Path(run_dir).parent / (Path(run_dir).name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            yield f.read().strip() or "unknown"
            return
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield None
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def train_in_subprocess(label, run_dir, config_file, seed, opts, env, root="."):
    """Runs :func:`run_one` in a child process from the repository root (the configs' paths are
    relative to it), its output appended to ``run_dir/stdout.txt``; returns its exit status."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger.info("%s: training into %s", label, run_dir)
    cmd = [sys.executable, "-m", __name__, config_file, str(run_dir), str(seed), *opts]
    with open(run_dir / "stdout.txt", "ab") as log:
        return subprocess.run(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                              env=env).returncode


def shareable_record(record):
    """``record`` without the machine's paths: its :data:`LOCATION_KEYS` and the ``OUTPUT_DIR``
    line of its config (a key the protocol does not compare: ``protocol._RUN_KEYS``)."""
    out = {k: v for k, v in record.items() if k not in LOCATION_KEYS}
    if isinstance(out.get("config"), str):
        out["config"] = _OUTPUT_DIR_LINE.sub("", out["config"])
    return out


def with_location(record, run_dir):
    """``record`` with the :data:`LOCATION_KEYS` of ``run_dir/run.json`` where that file is
    here (a run of this machine); otherwise as it is (a record of another machine has none, or
    one made before the records left them out has its own)."""
    finished = Path(run_dir) / "run.json"
    if not finished.is_file():
        return record
    here = json.loads(finished.read_text())
    return {**record, **{k: here[k] for k in LOCATION_KEYS if k in here}}


def collect(output, methods, seeds):
    """The finished runs {method: {seed: record}} under ``output/<method>/seed<seed>/``."""
    results = {}
    for name in methods:
        for seed in seeds:
            f = Path(output) / name / f"seed{seed}" / "run.json"
            if f.is_file():
                results.setdefault(name, {})[seed] = json.loads(f.read_text())
    return results


if __name__ == "__main__":
    config, out, seed, *extra = sys.argv[1:]
    run_one(config, out, int(seed), extra)
