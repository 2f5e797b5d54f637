"""
The tables of the long-tail benchmark from the runs' records: means and spreads over seeds,
differences from the baseline and from LDA with bootstrap confidence intervals, time ratios, the
TIDE breakdown and the group confusions; written as results.md and results.json.
"""
import copy
import functools
import hashlib
import json
import logging
import math
import statistics
from pathlib import Path

from detectron2.config import CfgNode

from ..evaluation.analysis import bootstrap_difference, evaluate_results
from .runs import LARGE_VOCAB_METRICS, METRICS, shareable_record

CI_METRICS = ("AP", "APr")
# with intervals too where both runs saved their match records (TEST.LVIS_EVAL.METRICS)
LARGE_VOCAB_CI = ("AP-fixed", "AP-pool")
ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")

logger = logging.getLogger("benchmark")


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results):
    """results: {method: {seed: run record}} -> {method: {key: (mean, std)}}"""
    summary = {}
    for method, runs in results.items():
        rows = list(runs.values())
        s = {"seeds": len(rows)}
        for task in ("bbox", "segm"):
            for k in METRICS + LARGE_VOCAB_METRICS:
                s[f"{task}/{k}"] = _mean_std([r[task].get(k) for r in rows])
        for k in ("sec_per_iter", "sec_per_image", "peak_rss_mb"):
            s[k] = _mean_std([r.get(k) for r in rows])
        s["timing_conditions"] = sorted({_timing_label(r) for r in rows}, key=str)
        summary[method] = s
    return summary


def _timing_label(record):
    """The record's torch threads x runs allowed at a time (``runs.timing_conditions``), as
    "1 × 2"; None for a record that does not keep them."""
    c = record.get("timing_conditions")
    return None if c is None else f"{c['threads']} × {c['jobs']}"


def _fmt(mean_std, digits, seeds):
    """mean ± standard deviation over seeds; one seed has no spread to show, only its value"""
    mean, std = mean_std
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if seeds > 1 else "")


def markdown_table(summary, baseline="baseline"):
    """AP tables per task and the time table; with ``baseline``, differences and time ratios."""
    base = summary.get(baseline)
    lines = []
    for task in ("bbox", "segm"):
        head = ["method", "seeds"] + [f"{task} {k}" for k in METRICS]
        if base:
            head += [f"Δ{k}" for k in ("AP", "APr")]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, s in summary.items():
            row = [method, str(s["seeds"])] + [_fmt(s[f"{task}/{k}"], 1, s["seeds"])
                                                for k in METRICS]
            if base:
                for k in ("AP", "APr"):
                    row.append(f"{s[f'{task}/{k}'][0] - base[f'{task}/{k}'][0]:+.1f}")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if any(s[f"{task}/AP-fixed"][0] is not None or s[f"{task}/AP-pool"][0] is not None
               for s in summary.values()):  # AP-fixed and AP-pool beside LVIS AP
            keys = ("AP",) + LARGE_VOCAB_METRICS
            head = ["method"] + [f"{task} {k}" for k in keys]
            if base:
                head += [f"Δ{k}" for k in ("AP", "AP-fixed", "AP-pool")]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for method, s in summary.items():
                row = [method] + [_fmt(s[f"{task}/{k}"], 1, s["seeds"]) for k in keys]
                if base:
                    for k in ("AP", "AP-fixed", "AP-pool"):
                        m, b = s[f"{task}/{k}"][0], base[f"{task}/{k}"][0]
                        row.append("-" if m is None or b is None else f"{m - b:+.1f}")
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    # times compare only between runs measured alike: a run alone with two threads is not
    # comparable to the baseline's two at a time with one thread each, so no ratio is given
    # (records that do not keep their conditions compare only with each other)
    head = ["method", "s / train iter", "s / test image", "peak RSS (MB)",
            "threads × runs at once"]
    if base:
        head += ["train time ratio", "test time ratio"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, s in summary.items():
        row = [method] + [_fmt(s[k], digits, s["seeds"]) for k, digits in
                          (("sec_per_iter", 3), ("sec_per_image", 3), ("peak_rss_mb", 0))]
        row.append(", ".join(c or "-" for c in s["timing_conditions"]))
        if base:
            alike = s["timing_conditions"] == base["timing_conditions"]
            for k in ("sec_per_iter", "sec_per_image"):
                m, b = s[k][0], base[k][0]
                row.append(f"{m / b:.2f}x" if alike and m is not None and b else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def run_fingerprint(record):
    """A short digest of what a run's record says it trained and measured (its config, seed and
    test metrics): an interval computed from two runs holds while both digests are the same."""
    config = shareable_record(record).get("config")  # the same from run.json and the record
    key = [config, record.get("seed"), record.get("bbox"), record.get("segm")]
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _has_detections(run):
    return "results_json" in run and Path(run["results_json"]).is_file()


def compare_runs(results, references, n_bootstrap, seed=0, jobs=1, earlier=None):
    """
    {reference: {method: {seed: {task: {metric: (difference, lower, upper)}, ...}}}}: each
    method's AP difference from each reference run of the same seed, with a 95% bootstrap CI
    over the images of the split the runs report (``val_json``: the last of DATASETS.TEST, the
    test split in the protocol; both evaluations resampled with the same images). ``jobs`` > 1:
    the runs' AP-fixed / AP-pool resamples, single-threaded numpy and the report's longest part
    at a large vocabulary (seconds a resample per run and task), are computed in that many
    processes.

    Each comparison also keeps the two runs' :func:`run_fingerprint` (``runs``) and the
    bootstrap's size and seed. The bootstrap needs both runs' detections, which live in their
    output folders, not in the records; ``earlier`` (the ``comparisons`` of a results.json
    written before, as JSON gives them back) supplies the comparisons of runs whose detections
    are gone, where the fingerprints, size and seed are the same. A comparison whose AP / APr
    intervals came out but whose AP-fixed / AP-pool ones did not says why in ``incomplete``.
    """
    from ..evaluation import large_vocab

    earlier = earlier or {}
    cache = {}

    def evaluation(method, s, task):
        if (method, s, task) not in cache:
            run = results[method][s]
            cache[method, s, task] = evaluate_results(
                run["val_json"], run["results_json"], task, run.get("max_dets_per_image", 300))[1]
        return cache[method, s, task]

    out = {}
    pairs = []
    for ref in references:
        for method, runs in results.items():
            for s, run in runs.items():
                if method == ref or s not in results[ref]:
                    continue
                stamp = {"runs": [run_fingerprint(results[ref][s]), run_fingerprint(run)],
                         "n_bootstrap": n_bootstrap, "bootstrap_seed": seed}
                if _has_detections(run) and _has_detections(results[ref][s]):
                    pairs.append((ref, method, s, stamp))
                    continue
                kept = earlier.get(ref, {}).get(method, {}).get(str(s))
                if kept and all(kept.get(k) == v for k, v in stamp.items()):
                    out.setdefault(ref, {}).setdefault(method, {})[s] = copy.deepcopy(kept)
                    logger.info("%s vs %s seed %s: detections gone, the interval computed "
                                "earlier kept%s", method, ref, s,
                                f" ({kept['incomplete']})" if "incomplete" in kept else "")
                else:  # the table shows "-"
                    logger.warning("%s vs %s seed %s: no bootstrap (a run's detections are "
                                   "gone and no earlier interval matches its record)",
                                   method, ref, s)
    # each comparison's two resample keys (or why it has none), read from the records once
    wanted = {}
    for ref, method, s, _ in pairs:
        for task in ("bbox", "segm"):
            try:
                wanted[ref, method, s, task] = _large_vocab_keys(results, ref, method, s, task,
                                                                 n_bootstrap, seed)
            except Exception as e:  # noqa: BLE001  (raised in the comparison below)
                wanted[ref, method, s, task] = e
    samples = _large_vocab_resamples(
        sorted({key for keys in wanted.values() if isinstance(keys, tuple) for key in keys}),
        jobs)
    for ref, method, s, stamp in pairs:
        try:
            out.setdefault(ref, {}).setdefault(method, {})[s] = {
                **{task: bootstrap_difference(evaluation(ref, s, task),
                                              evaluation(method, s, task), CI_METRICS,
                                              n_bootstrap, seed)
                   for task in ("bbox", "segm")},
                **stamp}
            for task in ("bbox", "segm"):
                keys = wanted[ref, method, s, task]
                if isinstance(keys, Exception):
                    raise keys
                if keys is None:
                    continue
                a, b = (samples[key] for key in keys)
                for failed in (a, b):
                    if isinstance(failed, Exception):
                        raise failed
                out[ref][method][s][task].update(large_vocab.paired_interval(a, b))
        except Exception as e:  # noqa: BLE001  (the table shows "-")
            entry = out.get(ref, {}).get(method, {}).get(s)
            if entry is None:
                logger.warning("%s vs %s seed %s: no bootstrap (%s)", method, ref, s, e)
                continue
            # the AP / APr intervals came out, AP-fixed / AP-pool's did not: the entry says so,
            # and a later report that keeps it (detections gone) says so again
            entry["incomplete"] = f"AP-fixed / AP-pool not computed: {e}"
            logger.warning("%s vs %s seed %s: %s", method, ref, s, entry["incomplete"])
    return out


def _large_vocab_keys(results, ref, method, s, task, n_bootstrap, seed):
    """The resamples (ref's, method's) that compare two runs' AP-fixed / AP-pool: their saved
    match records on the method run's evaluation set with its per-category K; None where a
    run saved none (TEST.LVIS_EVAL.METRICS)."""
    run = results[method][s]
    paths = [r.get("match_records", {}).get(task) for r in (results[ref][s], run)]
    if not all(paths):
        return None
    k = CfgNode.load_cfg(run["config"]).TEST.LVIS_EVAL.DETECTIONS_PER_CATEGORY
    return tuple((p, run["val_json"], k, n_bootstrap, seed) for p in paths)


def _large_vocab_resamples(keys, jobs):
    """{key: resamples, or the exception that prevented them}, each run's computed once however
    many runs it is compared with (the resamples depend on the seed and the set only)."""
    if jobs > 1 and len(keys) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(keys))) as pool:
            return dict(zip(keys, pool.map(_large_vocab_samples, keys)))
    return {key: _large_vocab_samples(key) for key in keys}


def _large_vocab_samples(key):
    """One run's AP-fixed / AP-pool on the bootstrap resamples (``key``: match records, val
    JSON, K, resamples, seed), or the exception raised, so that one bad file costs its own
    comparisons only."""
    import numpy as np

    from ..evaluation import large_vocab

    path, val_json, k, n_bootstrap, seed = key
    try:
        images, counts, frequencies = _ground_truth_counts(val_json)
        return large_vocab.bootstrap_samples(np.load(path), counts, images, frequencies, k,
                                             LARGE_VOCAB_CI, n_bootstrap, seed)
    except Exception as e:  # noqa: BLE001  (returned: raised in the comparison that reads it)
        return e


@functools.lru_cache(maxsize=4)
def _ground_truth_counts(val_json):
    """(image ids, per-image object counts, category frequencies) of an evaluation set, read
    once for all the comparisons made on it."""
    from ..evaluation import large_vocab

    gt = json.loads(Path(val_json).read_text())
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    images = [img["id"] for img in gt["images"]]
    counts = large_vocab.gt_counts_per_image(gt["annotations"], [c["id"] for c in cats], images)
    return images, counts, [c.get("frequency", "f") for c in cats]


def analysis_tables(results, comparisons, references):
    """Markdown: differences with CIs, TIDE breakdown and group confusions, per seed."""
    lines = []
    for task in ("bbox", "segm"):
        ci = CI_METRICS + tuple(
            m for m in LARGE_VOCAB_CI
            if any(m in c.get(task, {}) for by_ref in comparisons.values()
                   for by_method in by_ref.values() for c in by_method.values()))
        head = ["method", "seed"] + [f"{task} Δ{m} vs {ref} [95% CI]"
                                     for ref in references for m in ci]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, runs in results.items():
            for s in runs:
                cells = []
                for ref in references:
                    d = comparisons.get(ref, {}).get(method, {}).get(s, {}).get(task)
                    for m in ci:
                        cells.append("-" if d is None or m not in d else
                                     f"{d[m][0]:+.1f} [{d[m][1]:+.1f}, {d[m][2]:+.1f}]")
                lines.append("| " + " | ".join([method, str(s)] + cells) + " |")
        lines.append("")
    for task in ("bbox", "segm"):
        head = ["method", "seed", f"{task} AP50"] + [f"ΔAP50 {e}" for e in ERRORS] + \
               ["objects: own class %", "group sibling %", "other group %", "missed %"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for method, runs in results.items():
            for s, run in runs.items():
                a = run.get("analysis", {}).get(task)
                if a is None:
                    continue
                t, g = a["tide"], a["group_confusions"] or {}
                row = [method, str(s), f"{t['ap50']:.1f}"] + \
                      [f"{t['delta_ap'][e]:.1f}" for e in ERRORS] + \
                      [f"{g.get(k, float('nan')):.1f}" for k in
                       ("own_class", "group_sibling", "other_group", "missed")]
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines + coverage_tables(results))


def coverage_tables(results):
    """
    Markdown lines: per run, the classes never predicted and those at segm AP 0, by frequency
    group (what an AP average hides at hundreds of classes); then LDA's inner workings of the
    runs that recorded them (``lda_stats``: alpha at each quarter of training, the windowed
    accuracies, beta's range, the loss terms' shares of the total loss).
    """
    lines = []
    for method, runs in results.items():
        for s, run in runs.items():
            a = run.get("analysis", {})
            if "detections_per_class" not in a:
                continue
            freq = {str(k): v for k, v in a["class_frequency"].items()}
            never = {str(k) for k, n in a["detections_per_class"].items() if n == 0}
            zero = {str(k) for k, v in a["segm"]["per_class_ap"].items() if v == 0}
            cells = [" / ".join(str(sum(freq.get(k) == g for k in ks)) for g in "rcf")
                     for ks in (never, zero)]
            lines.append(f"| {method} | {s} | {cells[0]} | {cells[1]} |")
    if lines:  # records made before the counts were kept have none
        lines = ["| method | seed | classes never predicted (r / c / f) "
                 "| segm AP 0 (r / c / f) |", "|---|---|---|---|", *lines, ""]
    stats = [(m, s, run["lda_stats"]) for m, runs in results.items()
             for s, run in runs.items() if "lda_stats" in run]
    if stats:
        from .plot_analysis import LDA_STATS_COLUMNS, lda_stats_cells

        lines += ["| method | seed | " + " | ".join(LDA_STATS_COLUMNS) + " |",
                  "|---" * (2 + len(LDA_STATS_COLUMNS)) + "|"]
        lines += ["| " + " | ".join([m, str(s), *lda_stats_cells(st)]) + " |"
                  for m, s, st in stats]
        lines.append("")
    return lines


def build_report(results, baseline, n_bootstrap, jobs=1, earlier=None):
    """(results.md text, results.json content) of the runs {method: {seed: record}};
    ``jobs``: processes for the bootstrap, ``earlier``: the comparisons of an earlier
    results.json (both: ``compare_runs``)."""
    summary = summarize(results)
    references = [r for r in (baseline, "lda") if r in results]
    comparisons = compare_runs(results, references, n_bootstrap, jobs=jobs, earlier=earlier)
    table = markdown_table(summary, baseline if baseline in summary else None)
    table += "\n" + analysis_tables(results, comparisons, references)
    data = {"runs": results, "summary": summary, "baseline": baseline, "comparisons": comparisons}
    return table, data


def write_report(folder, table, data):
    """Writes ``folder/results.md`` and ``folder/results.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(data, indent=2))
    (folder / "results.md").write_text(table)
