"""
Analysis figures of the LDA paper for trained detectors (matplotlib, PNG).

    # Fig. 4a: per-class L2 norm of the classifier weights, classes sorted by training frequency
    python tools/plot_analysis.py weight-norms --run base=output/base --run lda=output/lda \
        --out norms.png
    # Fig. 6b: alpha and the windowed accuracies of g_u and g_b over training
    python tools/plot_analysis.py alpha --run output/lda --out alpha.png
    # AP, APr, APc, APf per method (mean over seeds, std as error bars)
    python tools/plot_analysis.py ap-groups --results output/benchmark/results.json --out ap.png
    # per-class AP of every method against the class's training images
    python tools/plot_analysis.py per-class-ap --results output/benchmark/results.json \
        --out ap_per_class.png
    # LDA's inner workings in figures (no PNG): alpha at each quarter of training, the accuracies,
    # each loss term over the last fifth, beta's range, non-finite values
    python tools/plot_analysis.py lda-stats --run output/lda [--run ...] [--out stats.json]
    # precision against score, all classes pooled (what AP-pool rewards), from the match records
    # of an evaluation with TEST.LVIS_EVAL.METRICS including "pool"
    python tools/plot_analysis.py reliability \
        --run base=output/base/inference/lvis_embedded_test/lvis_match_records_bbox.npy \
        --run lda=output/lda/inference/lvis_embedded_test/lvis_match_records_bbox.npy \
        --out reliability.png
    # intra-class vs inter-class cosine distances of box-head features of ground-truth boxes
    python tools/plot_analysis.py feature-distances --run base=output/base \
        --run lda_no_div=output/lda_no_div --run lda=output/lda --dataset lvis_embedded_val \
        --out dist.png [--max-images 60] [--space projection]
    # top-1 accuracy of the classifiers (LDA's g_u and g_b, the baseline's) on ground-truth
    # boxes, per rare / common / frequent group (no PNG)
    python tools/plot_analysis.py gt-accuracy --run base=output/base --run lda=output/lda \
        --dataset lvis_embedded_val [--max-images 100] [--out acc.json]

A run is ``NAME=OUTPUT_DIR`` or just ``OUTPUT_DIR`` (named after the folder); it holds
``model_final.pth``, ``metrics.json`` and ``config.yaml`` as written by ``train_net.py``.
Each command but ``lda-stats`` and ``gt-accuracy`` writes one PNG and prints its path; the
numeric commands also print a table.
Figures are drawn on matplotlib's ``Figure`` directly: no pyplot, no global backend.
"""
import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch.nn import functional as F

from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.modeling import build_model

from ..config import get_project_cfg
from ..engine.checkpoint import SafeCheckpointer, last_checkpoint_name, load_checkpoint_file
from ..evaluation.large_vocab import reliability
from ..modeling.balance import importance_weights
from ..modeling.lda_loss import class_centres

PRED = "roi_heads.box_predictor."
CLASSIFIERS = ("cls_score", "unbalanced_score", "balanced_score")
AP_METRICS = ("AP", "APr", "APc", "APf")
GROUP_COLORS = {"r": "#f4cccc", "c": "#fff2cc", "f": "#d9ead3"}
GROUP_NAMES = {"r": "rare", "c": "common", "f": "frequent"}


# ------------------------------------------------------------------------------ runs
def parse_run(spec):
    """'NAME=DIR' or 'DIR' -> (name, Path(DIR))."""
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, Path(spec).name
    return name, Path(path)


def _weights_path(run_dir):
    """``run_dir/model_final.pth``, or the checkpoint ``last_checkpoint`` names while the run is
    still training."""
    path, last = Path(run_dir) / "model_final.pth", last_checkpoint_name(run_dir)
    return Path(run_dir) / last if last and not path.is_file() else path


def load_state(run_dir):
    """The model weights of ``run_dir/model_final.pth``, or of the checkpoint ``last_checkpoint``
    names while the run is still training (errors name the file)."""
    ckpt = load_checkpoint_file(str(_weights_path(run_dir)))
    return ckpt.get("model", ckpt)


def load_cfg(run_dir):
    """The run's config (``run_dir/config.yaml``), on the CPU."""
    cfg = get_project_cfg()
    cfg.merge_from_file(str(Path(run_dir) / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def class_info(states=(), run_dirs=()):
    """
    Returns (freq, groups): training frequencies (C,) and 'r'/'c'/'f' per class (or None each).
    The frequency comes from an LDA checkpoint's ``class_freq`` buffer when one has it, else from
    the training set's ``class_instance_count``; the groups from its ``class_frequency``.
    """
    freq = next((s[PRED + "class_freq"].double().numpy() for s in states if PRED + "class_freq"
                 in s and bool(s.get(PRED + "class_freq_ready", True))), None)
    run_dir = next((d for d in run_dirs if (Path(d) / "config.yaml").is_file()), None)
    if run_dir is None:
        return freq, None
    meta = MetadataCatalog.get(load_cfg(run_dir).DATASETS.TRAIN[0])
    if freq is None and meta.get("class_instance_count") is not None:
        freq = np.asarray(meta.get("class_instance_count"), dtype=float)
    return freq, meta.get("class_frequency")


def frequency_order(freq, num_classes):
    """Class indices by descending training frequency (stable; identity when unknown)."""
    return np.arange(num_classes) if freq is None else np.argsort(-np.asarray(freq), kind="stable")


def class_axis(ax, groups, order, labels=True):
    """Class ids as x ticks; shades the x range of each run of one r/c/f group."""
    if labels:
        ax.set_xticks(np.arange(len(order)), [str(i) for i in order], fontsize=7)
        ax.set_xlabel("class id, sorted by training frequency (descending)")
    g = [groups[i] for i in order] if groups is not None else []
    start = 0
    for i in range(1, len(g) + 1):
        if i == len(g) or g[i] != g[start]:
            ax.axvspan(start - 0.5, i - 0.5, color=GROUP_COLORS.get(g[start], "#eeeeee"), zorder=0)
            ax.text((start + i - 1) / 2, 1.0, GROUP_NAMES.get(g[start], g[start]), ha="center",
                    va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
            start = i


# ------------------------------------------------------------------------------ weight norms
def classifier_norms(state):
    """{classifier: (C,) L2 norms of its weight rows}; the baseline's background row dropped."""
    norms = {}
    for name in (n for n in CLASSIFIERS if PRED + n + ".weight" in state):
        w = state[PRED + name + ".weight"]
        norms[name] = (w[:-1] if name == "cls_score" else w).double().norm(dim=1).numpy()
    return norms


def weight_norm_data(runs):
    """[(name, dir)] -> ({'name: classifier': norms in frequency order}, order, groups)."""
    states = [load_state(d) for _, d in runs]
    per_run = [classifier_norms(s) for s in states]
    num_classes = next((len(v) for n in per_run for v in n.values()), None)
    if num_classes is None:
        raise SystemExit(f"no classifier weights ({', '.join(CLASSIFIERS)}) in the checkpoints")
    freq, groups = class_info(states, [d for _, d in runs])
    order = frequency_order(freq, num_classes)
    curves = {f"{name}: {c}": v[order] for (name, _), n in zip(runs, per_run) for c, v in n.items()}
    return curves, order, groups


def head_tail_ratio(sorted_values, sorted_groups=None):
    """Mean over the frequent group / mean over the rare group (else first / last third)."""
    v = np.asarray(sorted_values, dtype=float)
    if sorted_groups is not None and {"f", "r"} <= set(sorted_groups):
        g = np.asarray(sorted_groups)
        return v[g == "f"].mean() / v[g == "r"].mean()
    k = max(1, len(v) // 3)
    return v[:k].mean() / v[-k:].mean()


def plot_weight_norms(runs, out):
    curves, order, groups = weight_norm_data(runs)
    sorted_groups = [groups[i] for i in order] if groups is not None else None
    fig = Figure(figsize=(max(6, 0.3 * len(order) + 2), 4))
    ax = fig.subplots()
    class_axis(ax, groups, order)
    print(f"{'classifier':40s} {'mean norm':>10s} {'head/tail':>10s}")
    for label, v in curves.items():
        ax.plot(np.arange(len(v)), v, marker="o", ms=3, label=label)
        print(f"{label:40s} {v.mean():10.4f} {head_tail_ratio(v, sorted_groups):10.3f}")
    ax.set_ylabel("L2 norm of classifier weight row")
    ax.set_title("Classifier weight norms (paper Fig. 4a)", pad=14)
    ax.legend(fontsize=8)
    return _save(fig, out)


# ------------------------------------------------------------------------------ alpha
def read_metrics(path):
    """Rows of detectron2's metrics.json. After a resume or restart (the iteration goes back) the
    latest run's rows replace those of the same or later iterations; consecutive rows of one
    iteration (e.g. evaluation results) are merged."""
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            it, last = row.get("iteration"), rows[-1].get("iteration") if rows else None
            if it is not None and last is not None and it <= last:
                if it == last:  # e.g. evaluation results logged at the last iteration
                    row = {**rows.pop(), **row}
                rows = [r for r in rows if r.get("iteration", -1) < it]
            rows.append(row)
    return rows


def alpha_curves(path, rows=None):
    """{'iteration', 'lda/alpha', 'lda/acc_unbalanced', 'lda/acc_balanced'} -> numpy arrays,
    from ``path`` or from its rows already read (``read_metrics(path)``)."""
    keys = ("lda/alpha", "lda/acc_unbalanced", "lda/acc_balanced")
    rows = [r for r in (read_metrics(path) if rows is None else rows) if all(k in r for k in keys)]
    if not rows:
        raise SystemExit(f"{path}: no LDA rows (lda/alpha, ...): is this an LDA run?")
    data = {"iteration": np.array([r["iteration"] for r in rows])}
    data.update({k: np.array([r[k] for r in rows], dtype=float) for k in keys})
    return data


def plot_alpha(run_dir, out):
    data = alpha_curves(Path(run_dir) / "metrics.json")
    it = data["iteration"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(it, data["lda/acc_unbalanced"], label="acc of g_u (unbalanced)", color="tab:blue")
    ax.plot(it, data["lda/acc_balanced"], label="acc of g_b (balanced)", color="tab:green")
    top = max(1.0, data["lda/acc_unbalanced"].max(), data["lda/acc_balanced"].max())
    # runs made with alpha in percent (before 0.1) logged 0-100
    ax.set_ylim(0, 100.0 if top > 1.0 else 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("windowed training accuracy (fg proposals)")
    ax2 = ax.twinx()
    ax2.plot(it, data["lda/alpha"], label="alpha", color="tab:red", ls="--")
    ax2.set_ylabel("alpha = max(0, acc_u - acc_b)^gamma", color="tab:red")
    ax2.set_ylim(bottom=0)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", fontsize=8,
              bbox_to_anchor=(0.5, -0.15), ncol=3)
    # benchmark folders end in METHOD/SETTING/seedN: the seed alone would not say which run
    ax.set_title("Self-adaptive balance factor (paper Fig. 6b): "
                 + "/".join(Path(run_dir).resolve().parts[-3:]))
    print(f"last row (iteration {it[-1]}): " + ", ".join(
        f"{k} {data[k][-1]:.4f}" for k in ("lda/alpha", "lda/acc_unbalanced", "lda/acc_balanced")))
    return _save(fig, out)


LDA_LOSSES = ("loss_fgbg", "loss_cls_unbalanced", "loss_cls_balanced", "loss_intra", "loss_inter")


def lda_stats(run_dir, tail=0.2):
    """
    LDA's inner workings in one run: what goes wrong at a large class count shows here (alpha
    stuck at 0, a loss term dominating, beta exploding, non-finite values).

    Returns a dict: ``alpha_at`` (alpha at 25/50/75/100% of the logged iterations),
    ``alpha_zero_fraction`` (of the logged rows), ``acc_unbalanced`` / ``acc_balanced`` (means
    over the last ``tail`` of the iterations), ``losses`` (each LDA loss term's mean over that
    tail) and ``loss_share`` (its share of ``total_loss``), ``beta`` (max, median, min of the
    importance weights of Eq. 5 over the classes with training samples, and how many have none:
    from the checkpoint's class frequencies) and ``non_finite`` (the metric keys with a
    non-finite value anywhere).
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.json")
    data = alpha_curves(run_dir / "metrics.json", rows)
    it, alpha = data["iteration"], data["lda/alpha"]
    last = int(it[-1])
    out = {"iterations": last + 1,
           "alpha_at": {f"{q}%": float(alpha[min(len(it) - 1, np.searchsorted(it, q / 100 * last))])
                        for q in (25, 50, 75, 100)},
           "alpha_zero_fraction": float(np.mean(alpha == 0))}
    start = (1 - tail) * last
    recent = [r for r in rows if r.get("iteration", -1) >= start]
    for key in ("lda/acc_unbalanced", "lda/acc_balanced"):
        out[key.split("/")[1]] = float(np.mean([r[key] for r in recent if key in r]))
    losses = {k: float(np.mean([r[k] for r in recent if k in r]))
              for k in (*LDA_LOSSES, "total_loss") if any(k in r for r in recent)}
    total = losses.pop("total_loss", None)
    out["losses"] = losses
    if total:
        out["loss_share"] = {k: v / total for k, v in losses.items()}
    freq = load_state(run_dir)[PRED + "class_freq"].double()
    beta = importance_weights(freq)[freq > 0]
    out["beta"] = {"max": float(beta.max()), "median": float(beta.median()),
                   "min": float(beta.min()), "classes_without_samples": int((freq == 0).sum())}
    out["non_finite"] = sorted({k for r in rows for k, v in r.items()
                                if isinstance(v, float) and not math.isfinite(v)})
    return out


LDA_STATS_COLUMNS = ("alpha at 25/50/75/100%", "alpha = 0", "acc_u / acc_b",
                     "beta max / median", "loss shares (fgbg, cls_u, cls_b, intra, inter)",
                     "non-finite")


def lda_stats_cells(s):
    """The markdown cells of one :func:`lda_stats` result, as :data:`LDA_STATS_COLUMNS`."""
    shares = ", ".join(f"{s.get('loss_share', {}).get(k, float('nan')):.2f}" for k in LDA_LOSSES)
    return [" / ".join(f"{v:.3f}" for v in s["alpha_at"].values()),
            f"{100 * s['alpha_zero_fraction']:.0f}%",
            f"{s['acc_unbalanced']:.3f} / {s['acc_balanced']:.3f}",
            f"{s['beta']['max']:.1f} / {s['beta']['median']:.2f}", shares,
            ", ".join(s["non_finite"]) or "none"]


def print_lda_stats(runs, out=None):
    """Prints :func:`lda_stats` of each (name, run folder) as a table; writes them to ``out``
    (JSON) when given; returns them."""
    stats = {name: lda_stats(d) for name, d in runs}
    print("| run | " + " | ".join(LDA_STATS_COLUMNS) + " |")
    print("|---" * (1 + len(LDA_STATS_COLUMNS)) + "|")
    for name, s in stats.items():
        print("| " + " | ".join([name, *lda_stats_cells(s)]) + " |")
    if out:
        Path(out).write_text(json.dumps(stats, indent=2) + "\n")
        print(out)
    return stats


# ------------------------------------------------------------------------------ AP groups
def ap_group_stats(results, task="segm"):
    """results.json's dict -> {method: {metric: (mean, std over seeds)}}; NaN or negative
    (LVIS's "no class in this group") values are skipped."""
    stats = {}
    for method, runs in results["runs"].items():
        for k in AP_METRICS:
            vals = [float(r[task][k]) for r in runs.values() if r.get(task, {}).get(k) is not None]
            vals = [v for v in vals if v >= 0]  # drops NaN and LVIS's -1 (x100): no such class
            stats.setdefault(method, {})[k] = (statistics.fmean(vals) if vals else math.nan,
                                               statistics.stdev(vals) if len(vals) > 1 else 0.0)
    return stats


def plot_ap_groups(results_file, out, task="segm"):
    stats = ap_group_stats(json.loads(Path(results_file).read_text()), task)
    methods = list(stats)
    width = 0.8 / max(1, len(methods))
    fig = Figure(figsize=(max(6, 1.2 * len(methods) + 4), 4))
    ax = fig.subplots()
    x = np.arange(len(AP_METRICS))
    for i, m in enumerate(methods):
        mean, std = zip(*(stats[m][k] for k in AP_METRICS))
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, mean, width, yerr=std,
                      capsize=3, label=m)
        ax.bar_label(bars, [f"{v:.1f}" for v in mean], fontsize=7, padding=2)
        print(f"{m:20s} " + " ".join(f"{k} {v:5.1f}±{s:.1f}" for k, (v, s) in stats[m].items()))
    ax.set_xticks(x, AP_METRICS)
    ax.set_ylabel(f"{task} AP (mean over seeds, std bars)")
    ax.set_title(f"{task} AP by frequency group")
    ax.legend(fontsize=8)
    return _save(fig, out)


def per_class_ap_stats(results, task="segm", methods=None):
    """
    results.json's dict -> (image_count, frequency, {method: {category id: AP}}): the training
    image count and r/c/f group of every class, and each method's AP of the classes with ground
    truth in val (mean over seeds); ``methods``: only these rows of the results, in this order
    (a protocol's results hold every method's untuned row too, too many for one figure).
    """
    if methods:
        unknown = [m for m in methods if m not in results["runs"]]
        if unknown:
            raise SystemExit(f"--methods {unknown} not in the results; they hold: "
                             + ", ".join(repr(m) for m in results["runs"]))
    per_method, image_count, frequency = {}, {}, {}
    for method in methods or results["runs"]:
        runs = results["runs"][method]
        rows = [r["analysis"] for r in runs.values() if "analysis" in r]
        if not rows:
            continue
        for a in rows:
            image_count.update({int(k): v for k, v in a["class_image_count"].items()})
            frequency.update({int(k): v for k, v in a["class_frequency"].items()})
        aps = [{int(k): float(v) for k, v in a[task]["per_class_ap"].items()} for a in rows]
        cats = sorted(set().union(*aps))
        per_method[method] = {c: statistics.fmean([ap.get(c, math.nan) for ap in aps])
                              for c in cats}
    if not per_method:
        raise SystemExit("no per-class AP in the results (runs written before the error "
                         "analysis have none: run tools/benchmark.py again)")
    return image_count, frequency, per_method


def group_edges(image_count, frequency):
    """
    The training-image counts between the r / c / f groups of these classes: midway between a
    group's largest count and the next group's smallest (LVIS v1: 10.5 and 100.5). A dataset
    can map LVIS's thresholds (the icon world scales them), so they are read from its classes,
    not assumed; an edge is left out where a group is absent or the two overlap.
    """
    counts = {g: [image_count[c] for c, f in frequency.items() if f == g and image_count.get(c)]
              for g in "rcf"}
    return [(max(counts[lo]) + min(counts[hi])) / 2 for lo, hi in (("r", "c"), ("c", "f"))
            if counts[lo] and counts[hi] and max(counts[lo]) < min(counts[hi])]


def plot_per_class_ap(results_file, out, task="segm", methods=None):
    image_count, frequency, per_method = per_class_ap_stats(
        json.loads(Path(results_file).read_text()), task, methods)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    markers = "os^vD<>phx"
    for i, (m, ap) in enumerate(per_method.items()):
        cats = sorted(ap, key=lambda c: image_count.get(c) or 0)
        x = np.array([image_count.get(c) or 0 for c in cats], dtype=float)
        y = np.array([ap[c] for c in cats])
        points = ax.scatter(x, y, s=18, marker=markers[i % len(markers)], label=m, alpha=0.8)
        # least-squares line of AP on log10(training images): the trend of each method
        ok = np.isfinite(y) & (x > 0)
        slope = ""
        if ok.sum() > 1:
            k, b = np.polyfit(np.log10(x[ok]), y[ok], 1)
            xs = np.array([x[ok].min(), x[ok].max()])
            ax.plot(xs, k * np.log10(xs) + b, lw=1, color=points.get_facecolor()[0])
            slope = f"  slope {k:+.1f} AP per 10x training images"
        groups = {g: [ap[c] for c in cats if frequency.get(c) == g and np.isfinite(ap[c])]
                  for g in "rcf"}
        print(f"{m:20s} " + " ".join(f"AP{g} {statistics.fmean(v):5.1f} ({len(v)} classes)"
                                     for g, v in groups.items() if v) + slope)
    for edge in group_edges(image_count, frequency):
        ax.axvline(edge, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale; dashed: rare | common | frequent)")
    ax.set_ylabel(f"{task} AP of the class (mean over seeds)")
    ax.set_title(f"{task} per-class AP against training frequency")
    ax.legend(fontsize=8)
    return _save(fig, out)


# ------------------------------------------------------------------------------ feature distances
def class_distance_stats(features, labels):
    """
    Cosine distances (1 - cos) of features (n, D) with labels (n,), per class present (sorted):
    ``intra``: mean distance of the class's samples to its centre (mean feature; NaN with fewer
    than 2 samples, as in Eq. 7); ``inter``: mean distance of its centre to the other centres;
    ``nearest``: distance to the nearest other centre (``nearest_class``); ``pairwise``: matrix.
    """
    z = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    classes, inverse = torch.unique(y, return_inverse=True)
    centres, counts = class_centres(z, inverse, len(classes))  # the centres mu_k of Eq. 7 and 8
    dist = 1 - F.cosine_similarity(z, centres[inverse], dim=1, eps=1e-12)
    intra = torch.zeros(len(classes), dtype=z.dtype).index_add_(0, inverse, dist) / counts
    intra[counts < 2] = float("nan")
    normed = F.normalize(centres, dim=1, eps=1e-12)
    pairwise = 1 - normed @ normed.t()
    off = ~torch.eye(len(classes), dtype=torch.bool)
    inter = (pairwise * off).sum(1) / (len(classes) - 1)  # 0 / 0 = NaN for a single class
    nearest, nearest_idx = pairwise.masked_fill(~off, float("inf")).min(dim=1)
    nearest[torch.isinf(nearest)] = float("nan")
    return {"classes": classes.numpy(), "counts": counts.numpy(), "intra": intra.numpy(),
            "inter": inter.numpy(), "nearest": nearest.numpy(),
            "nearest_class": classes[nearest_idx].numpy(), "pairwise": pairwise.numpy()}


def load_model(run_dir):
    """(config, model in eval mode with the run's final weights, or its last checkpoint's while
    it is still training) of ``run_dir``."""
    cfg = load_cfg(run_dir)
    cfg.MODEL.WEIGHTS = str(_weights_path(run_dir))
    model = build_model(cfg)
    SafeCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return cfg, model.eval()


@torch.no_grad()
def gt_box_features(cfg, model, dataset_dicts, space="box_head", batch_size=8):
    """
    Box-head features (or the LDA projection of them, ``space="projection"``) of the ground-truth
    boxes of ``dataset_dicts``, pooled from the FPN features of the test-time resized images.
    Returns (features (n, D), labels (n,)).
    """
    # is_train=True only keeps the annotations; the augmentations are the test-time resize
    mapper = DatasetMapper(is_train=True, augmentations=utils.build_augmentation(cfg, False),
                           image_format=cfg.INPUT.FORMAT)
    heads = model.roi_heads
    feats, labels = [], []
    for i in range(0, len(dataset_dicts), batch_size):
        batch = [mapper(d) for d in dataset_dicts[i:i + batch_size]]
        images = model.preprocess_image(batch)  # padded at the bottom/right: boxes stay valid
        features = model.backbone(images.tensor)
        boxes = [b["instances"].gt_boxes.to(images.tensor.device) for b in batch]
        x = heads.box_head(heads.box_pooler([features[f] for f in heads.box_in_features], boxes))
        if space == "projection":
            x = heads.box_predictor.projection(x.flatten(1))
        feats.append(x.flatten(1).cpu())
        labels += [b["instances"].gt_classes for b in batch]
    return torch.cat(feats), torch.cat(labels)


def plot_feature_distances(runs, dataset, out, max_images=None, space="box_head"):
    dicts = DatasetCatalog.get(dataset)[: max_images or None]
    results = {}
    for name, run_dir in runs:
        cfg, model = load_model(run_dir)
        if space == "projection" and not hasattr(model.roi_heads.box_predictor, "projection"):
            print(f"{name}: no projection head (not an LDA run): skipped")
            continue
        results[name] = class_distance_stats(*gt_box_features(cfg, model, dicts, space))
    if not results:
        raise SystemExit("no run to plot")
    freq, groups = class_info([load_state(d) for _, d in runs], [d for _, d in runs])
    num_classes = max(int(r["classes"].max()) + 1 for r in results.values())
    order = frequency_order(freq, num_classes)
    print(f"{'run':20s} {'classes':>7s} {'boxes':>6s} {'mean intra':>10s} {'mean inter':>10s} "
          f"{'mean nearest':>12s} {'intra/nearest':>13s}")
    fig = Figure(figsize=(max(7, 0.35 * len(order) + 3), 7.5))
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(results)
    for j, (name, s) in enumerate(results.items()):
        mi, me, mn = np.nanmean(s["intra"]), np.nanmean(s["inter"]), np.nanmean(s["nearest"])
        x = np.arange(num_classes) + (j - (len(results) - 1) / 2) * width
        labels = (f"{name} (mean {mi:.3f})", f"{name} (mean {mn:.3f}; all pairs {me:.3f})")
        for ax, k, label in zip(axes, ("intra", "nearest"), labels):
            full = np.full(num_classes, np.nan)  # classes absent from the images stay empty
            full[s["classes"]] = s[k]
            ax.bar(x, full[order], width, label=label)
        print(f"{name:20s} {len(s['classes']):7d} {int(s['counts'].sum()):6d} {mi:10.4f} "
              f"{me:10.4f} {mn:12.4f} {mi / mn:13.3f}")
    titles = ("intra-class: mean distance of a class's boxes to its centre (lower = tighter)",
              "inter-class: distance of a class centre to the nearest other centre (higher = "
              "better separated)")
    for ax, title in zip(axes, titles):
        class_axis(ax, groups, order, labels=ax is axes[1])
        ax.set_ylabel(f"cosine distance ({space})")
        ax.set_title(title, fontsize=9, pad=14)
        ax.legend(fontsize=8)
    fig.suptitle(f"Ground-truth box features on {dataset} ({len(dicts)} images)", fontsize=10)
    return _save(fig, out)


# ------------------------------------------------------------------------------ box accuracy
def group_accuracy(logits, labels, groups):
    """
    Top-1 accuracy of ``logits`` (n, C) against ``labels`` (n,) over all the boxes and per
    frequency group of the label (``groups``: 'r' / 'c' / 'f' per class): ``{"all", "r", "c",
    "f": accuracy (NaN for a group without boxes), "boxes": {group: count}}``.
    """
    hit = (torch.as_tensor(logits).argmax(1) == torch.as_tensor(labels)).numpy()
    label_groups = np.asarray(list(groups))[np.asarray(labels)]
    out = {"all": float(hit.mean()) if len(hit) else float("nan"), "boxes": {"all": len(hit)}}
    for g in "rcf":
        sel = label_groups == g
        out[g] = float(hit[sel].mean()) if sel.any() else float("nan")
        out["boxes"][g] = int(sel.sum())
    return out


@torch.no_grad()
def classifier_logits(model, features):
    """{name: (n, C) logits} of a run's class classifiers on box-head features: LDA's ``g_u``
    and ``g_b``, or the C class columns of a (C+1)-way ``cls_score`` (background left out: the
    boxes are objects); {} for a predictor with neither."""
    p = model.roi_heads.box_predictor
    if hasattr(p, "balanced_score"):
        return {"g_u": p.unbalanced_score(features), "g_b": p.balanced_score(features)}
    if hasattr(p, "cls_score"):
        return {"cls": p.cls_score(features)[:, : p.num_classes]}
    return {}


def print_gt_accuracy(runs, dataset, max_images=None, out=None):
    """
    Classification accuracy of each run's classifiers on the ground-truth boxes of ``dataset``
    (its first ``max_images`` images), all boxes and per rare / common / frequent group: where
    LDA's balanced classifier gains on the tail and what it gives up on the head, against the
    baseline's classifier on the same boxes. Prints a table; ``out``: JSON of the figures.
    """
    dicts = DatasetCatalog.get(dataset)[: max_images or None]
    groups = MetadataCatalog.get(dataset).get("class_frequency")
    if groups is None:
        raise SystemExit(f"{dataset}: no class_frequency (r/c/f) in its metadata")
    rows = {}
    print(f"Top-1 accuracy on the ground-truth boxes of {dataset} ({len(dicts)} images)")
    print(f"{'run':20s} {'classifier':10s} {'all':>6s} {'rare':>6s} {'common':>6s} "
          f"{'freq.':>6s}   boxes all / r / c / f")
    for name, run_dir in runs:
        cfg, model = load_model(run_dir)
        features, labels = gt_box_features(cfg, model, dicts)
        for head, logits in classifier_logits(model, features).items():
            a = rows[f"{name}/{head}"] = group_accuracy(logits, labels, groups)
            b = a["boxes"]
            print(f"{name:20s} {head:10s} {a['all']:6.3f} {a['r']:6.3f} {a['c']:6.3f} "
                  f"{a['f']:6.3f}   {b['all']} / {b['r']} / {b['c']} / {b['f']}")
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
    return rows


# ------------------------------------------------------------------------------ reliability
def plot_reliability(runs, out, bins=10):
    """
    Precision against score per run, all classes pooled (``large_vocab.reliability``), from the
    match records an AP-fixed / AP-pool evaluation saves (``inference/<dataset>/
    lvis_match_records_<task>.npy``). Prints each run's detections, ECE and per-bin precision.
    """
    fig = Figure(figsize=(9, 4))
    ax, ax_n = fig.subplots(1, 2)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    print(f"{'run':24s} {'detections':>10s} {'ECE':>6s} {'bins':>6s}  precision per score bin "
          "(bins: |precision - score| averaged over the bins alike)")
    stats = {}
    for name, path in runs:
        r = stats[name] = reliability(np.load(path), bins)
        full = r["count"] > 0
        ax.plot(r["mean_score"][full], r["precision"][full], marker="o", ms=3, label=name)
        ax_n.plot((r["edges"][:-1] + 0.5 / bins)[full], r["count"][full], marker="o", ms=3,
                  label=name)  # empty bins left out: the axis is logarithmic
        print(f"{name:24s} {int(r['count'].sum()):10d} {r['ece']:6.3f} {r['bin_error']:6.3f}  "
              + " ".join("  -  " if not n else f"{p:.2f}" for n, p in
                         zip(r["count"], r["precision"])))
    ax.set_xlabel("mean score in the bin")
    ax.set_ylabel("precision at IoU 0.5 (all classes pooled)")
    ax.set_title("reliability: what AP-pool rewards", fontsize=9)
    ax.legend(fontsize=8)
    ax_n.set_yscale("log")
    ax_n.set_xlabel("score bin")
    ax_n.set_ylabel("detections")
    _save(fig, out)
    return stats


# ------------------------------------------------------------------------------ CLI
def _save(fig, out):
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)
    return str(out)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = {name: sub.add_parser(name, help=text) for name, text in [
        ("weight-norms", "classifier weight norms by class frequency (Fig. 4a)"),
        ("alpha", "alpha and the g_u / g_b training accuracies (Fig. 6b)"),
        ("ap-groups", "AP, APr, APc, APf per method from a benchmark's results.json"),
        ("per-class-ap", "per-class AP against training frequency, from a results.json"),
        ("lda-stats", "alpha, accuracies, loss terms, beta and non-finite values of LDA runs"),
        ("reliability", "precision against score, classes pooled, from AP-pool match records"),
        ("feature-distances", "intra/inter-class distances of ground-truth box features"),
        ("gt-accuracy", "accuracy of the classifiers on ground-truth boxes, per r/c/f group")]}
    for name in ("weight-norms", "feature-distances", "lda-stats", "gt-accuracy"):
        cmd[name].add_argument("--run", action="append", required=True,
                               help="NAME=OUTPUT_DIR or OUTPUT_DIR (repeatable)")
    cmd["alpha"].add_argument("--run", required=True, help="OUTPUT_DIR of an LDA run")
    cmd["reliability"].add_argument(
        "--run", action="append", required=True,
        help="NAME=RECORDS.npy: inference/<dataset>/lvis_match_records_<task>.npy of a run "
        "evaluated with TEST.LVIS_EVAL.METRICS including 'pool' or 'fixed' (repeatable)")
    cmd["reliability"].add_argument("--bins", type=int, default=10)
    cmd["ap-groups"].add_argument("--results", required=True)
    cmd["ap-groups"].add_argument("--task", choices=("segm", "bbox"), default="segm")
    cmd["per-class-ap"].add_argument("--results", required=True)
    cmd["per-class-ap"].add_argument("--task", choices=("segm", "bbox"), default="segm")
    cmd["per-class-ap"].add_argument("--methods", nargs="+",
                                     help="the results' rows to draw (default: all)")
    p = cmd["feature-distances"]
    p.add_argument("--dataset", default="lvis_embedded_val")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--space", choices=("box_head", "projection"), default="box_head",
                   help="box-head output, or LDA's projection head on it (LDA runs only)")
    p = cmd["gt-accuracy"]
    p.add_argument("--dataset", required=True, help="registered split whose boxes are classified")
    p.add_argument("--max-images", type=int, default=None)
    for name, p in cmd.items():
        if name in ("lda-stats", "gt-accuracy"):
            p.add_argument("--out", help="JSON file to write the figures to (optional)")
        else:
            p.add_argument("--out", required=True, help="PNG file to write")
    return parser


def main(argv=None):
    """``tools/plot_analysis.py``: draws the figure of the command; returns the PNG's path
    (``lda-stats``: prints and returns the figures)."""
    a = get_parser().parse_args(argv)
    if a.command == "alpha":
        return plot_alpha(a.run, a.out)
    if a.command == "ap-groups":
        return plot_ap_groups(a.results, a.out, a.task)
    if a.command == "per-class-ap":
        return plot_per_class_ap(a.results, a.out, a.task, a.methods)
    runs = [parse_run(r) for r in a.run]
    if a.command == "lda-stats":
        return print_lda_stats(runs, a.out)
    if a.command == "gt-accuracy":
        return print_gt_accuracy(runs, a.dataset, a.max_images, a.out)
    if a.command == "reliability":
        return plot_reliability(runs, a.out, a.bins)
    if a.command == "weight-norms":
        return plot_weight_norms(runs, a.out)
    return plot_feature_distances(runs, a.dataset, a.out, a.max_images, a.space)
