"""
The dataset report (``tools/inspect_dataset.py``): what a long-tailed training set looks like to
LDA and to repeat-factor sampling, before any training.

* images, objects, crowd regions, classes; LVIS's rare / common / frequent groups (absolute
  counts of training images: rare 1-10, common 11-100, frequent more) and what they are on
  this dataset as a share of its images;
* training images per class: min / median / max, the classes with none;
* repeat-factor sampling (detectron2's ``RepeatFactorTrainingSampler.
  repeat_factors_from_category_frequency``, ``r(c) = max(1, sqrt(t / f(c)))``, ``f(c)`` the
  fraction of training images with class c, ``r(I)`` the largest over its classes) at the
  config's ``DATALOADER.REPEAT_THRESHOLD`` and at other thresholds: the classes oversampled,
  the images repeated, the largest repeat, the expected epoch length;
* LDA's importance weights (Eq. 5, :func:`projects_lda.modeling.balance.importance_weights`) on
  the class frequencies the model sees (:func:`projects_lda.data.class_freq.class_frequencies`
  under the config's sampler): their range over the classes with samples, how they fall on the
  training rows, and how the balanced loss's scale moves from one drawn image to the next
  (:func:`image_weight_stats`);
* classes with objects in the evaluation splits but no training image;
* a class histogram (PNG, log scale, r/c/f coloured) of training images per class.
"""
import json
import os

import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.samplers import RepeatFactorTrainingSampler

from ..config import get_project_cfg
from ..data.class_freq import class_frequencies, class_image_counts, training_records
from ..data.datasets import register_lvis_format
from ..data.frequency_groups import COMMON_MAX_IMAGES, RARE_MAX_IMAGES
from ..modeling.balance import importance_weights

__all__ = ["dataset_report", "format_report", "image_weight_stats", "importance_weight_stats",
           "plot_class_histogram",
           "DEFAULT_THRESHOLDS"]

DEFAULT_THRESHOLDS = (0.001, 0.01, 0.1)  # LVIS's, and two for smaller datasets
GROUP_COLOURS = {"r": "#d62728", "c": "#ff7f0e", "f": "#1f77b4"}


def _repeat_stats(dicts, image_counts, threshold):
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        dicts, threshold).numpy()
    fraction = image_counts / max(len(dicts), 1)
    return {"threshold": threshold,
            "classes_oversampled": int(((fraction > 0) & (fraction < threshold)).sum()),
            "images_repeated": int((factors > 1).sum()),
            "largest_repeat": float(factors.max()) if len(factors) else 1.0,
            "expected_epoch_images": float(factors.sum()),
            "epoch_ratio": float(factors.sum() / max(len(dicts), 1))}


def _image_weights(dicts, freq, threshold):
    """:func:`image_weight_stats` of the training records under the config's sampling."""
    import torch

    if not dicts or not bool((torch.as_tensor(freq) > 0).any()):
        return None
    beta = importance_weights(torch.as_tensor(freq, dtype=torch.float64)).numpy()
    factors = (RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
        dicts, threshold).numpy() if threshold > 0 else np.ones(len(dicts)))
    ids = [[a["category_id"] for a in d["annotations"] if not a.get("iscrowd", 0)] for d in dicts]
    return image_weight_stats(ids, beta, factors)


def importance_weight_stats(freq):
    """
    How LDA's importance weights (Eq. 5) fall on the training rows, from the frequencies ``freq``
    (C,) the model sees: a dict with their ``min``, ``max`` and ``ratio`` over the classes with
    samples; the weight of the median training row (``row_median``); the share of rows weighted
    above 5 (``rows_above_5``); and ``effective_share`` = 1 / E_rows[beta^2], the share of the
    rows that the weighted loss effectively averages over (Kish's effective sample size over n;
    E_rows[beta] is 1 by construction, so this falls as the tail's weights grow). None values
    when no class has a sample.
    """
    import torch

    freq = torch.as_tensor(freq, dtype=torch.float64)
    if not bool((freq > 0).any()):
        return dict.fromkeys(("min", "max", "ratio", "row_median", "rows_above_5",
                              "effective_share"))
    beta = importance_weights(freq)
    rows = freq / freq.sum()
    present = beta[freq > 0]
    order = torch.argsort(beta)
    median_at = int(torch.searchsorted(torch.cumsum(rows[order], 0),
                                       torch.tensor(0.5, dtype=torch.float64)))
    return {"min": float(present.min()), "max": float(present.max()),
            "ratio": float(present.max() / present.min()),
            "row_median": float(beta[order][median_at]),
            "rows_above_5": float(rows[beta > 5].sum()),
            "effective_share": float(1.0 / (rows * beta * beta).sum())}


def image_weight_stats(class_ids, beta, repeat_factors):
    """
    How the scale of LDA's balanced loss moves from one training image to the next. For each
    image, the mean of beta over its annotated instances is the weight ``L_b`` puts on that image
    relative to a plain cross-entropy (1 on average); LVIS's recipe trains one image per worker,
    so its spread is the step-to-step spread of each worker's ``L_b``. Images count as the sampler
    draws them (probability proportional to ``repeat_factors``).

    Args:
        class_ids: per training image, the contiguous class ids of its instances (not empty).
        beta: (C,) the importance weights.
        repeat_factors: (images,) repeat-factor sampling's factors (ones without RFS).

    Returns a dict: ``mean``, ``sd``, ``median``, ``p99`` and ``max`` of the per-image mean;
    ``images_above_5``, the share of drawn images whose mean exceeds 5; ``top10_share``, the
    share of all the weight (beta summed over the instances) that the 10% of drawn images with
    the largest sums carry.
    """
    beta = np.asarray(beta, dtype=np.float64)
    sums = np.array([beta[np.asarray(ids)].sum() for ids in class_ids])
    means = sums / np.array([len(ids) for ids in class_ids])
    w = np.asarray(repeat_factors, dtype=np.float64)
    w = w / w.sum()
    mean = float((w * means).sum())
    order = np.argsort(means, kind="stable")
    cum = np.cumsum(w[order])

    def quantile(q):  # the smallest mean whose share of the draws reaches q
        return float(means[order][min(int(np.searchsorted(cum, q - 1e-12)), len(cum) - 1)])

    # the heaviest images first, the last one taken in part to make up exactly 10% of the draws
    heavy = np.argsort(-sums, kind="stable")
    taken = np.clip(0.1 - (np.cumsum(w[heavy]) - w[heavy]), 0.0, w[heavy])
    return {"mean": mean, "sd": float(np.sqrt((w * (means - mean) ** 2).sum())),
            "median": quantile(0.5), "p99": quantile(0.99), "max": float(means.max()),
            "images_above_5": float(w[means > 5].sum()),
            "top10_share": float((taken * sums[heavy]).sum() / (w * sums).sum())}


def dataset_report(train, *, eval_datasets=(), repeat_threshold=0.0, rfs=True,
                   thresholds=DEFAULT_THRESHOLDS):
    """
    The report's numbers (a dict) for the registered training dataset ``train``.

    Args:
        eval_datasets: registered evaluation splits, for the classes they have and training
            lacks.
        repeat_threshold: the config's ``DATALOADER.REPEAT_THRESHOLD``.
        rfs: whether the config trains with ``RepeatFactorTrainingSampler`` (the frequencies
            LDA weights by are then the sampled ones).
        thresholds: other thresholds to show repeat-factor sampling at.
    """
    all_dicts = DatasetCatalog.get(train)
    meta = MetadataCatalog.get(train)
    names, groups = meta.thing_classes, list(meta.class_frequency)
    num_classes = len(names)
    dicts = training_records(all_dicts)
    image_counts = class_image_counts(dicts, num_classes).numpy().astype(np.int64)
    anns = [a for d in all_dicts for a in d["annotations"]]
    crowd = sum(1 for a in anns if a.get("iscrowd", 0))
    t = repeat_threshold if rfs else 0.0
    freq = class_frequencies(dicts, num_classes, source="sampled", repeat_thresh=t)
    shown = sorted({float(x) for x in (*thresholds, repeat_threshold) if x > 0})
    out = {
        "dataset": train,
        "json_file": meta.get("json_file", None),
        "federated": meta.get("federated", None),
        "has_masks": meta.get("has_masks", None),
        "images": len(all_dicts),
        "training_images": len(dicts),
        "instances": len(anns) - crowd,
        "crowd_regions": crowd,
        "classes": num_classes,
        "groups": {g: groups.count(g) for g in "rcf"},
        "group_share_of_images": {
            "r": 100.0 * RARE_MAX_IMAGES / max(len(dicts), 1),
            "c": 100.0 * COMMON_MAX_IMAGES / max(len(dicts), 1)},
        "images_per_class": {"min": int(image_counts.min()),
                             "median": float(np.median(image_counts)),
                             "max": int(image_counts.max())},
        "classes_without_training_images": [names[i] for i in np.flatnonzero(image_counts == 0)],
        "repeat_threshold": repeat_threshold if rfs else None,
        "repeat_factors": [_repeat_stats(dicts, image_counts, x) for x in shown],
        "lda_importance_weights": {
            "frequencies": "sampled (RFS)" if t > 0 else "annotations",
            **importance_weight_stats(freq)},
        "lda_weight_per_image": _image_weights(dicts, freq, t),
        "image_counts": image_counts.tolist(),
        "class_names": list(names),
        "class_groups": groups,
        "eval_splits": {},
    }
    train_ids = meta.get("thing_dataset_id_to_contiguous_id", None)
    for name in eval_datasets:
        ev_dicts = DatasetCatalog.get(name)
        ev_meta = MetadataCatalog.get(name)
        ev_ids = {v: k for k, v in ev_meta.get("thing_dataset_id_to_contiguous_id", {}).items()}
        present = {ev_ids.get(a["category_id"], a["category_id"] + 1) for d in ev_dicts
                   for a in d["annotations"] if not a.get("iscrowd", 0)}
        to_train = train_ids or {i + 1: i for i in range(num_classes)}
        missing = sorted(c for c in present if c not in to_train or image_counts[to_train[c]] == 0)
        id_names = {c: ev_meta.thing_classes[i] for i, c in ev_ids.items()} if ev_ids else {}
        out["eval_splits"][name] = {
            "images": len(ev_dicts), "classes_present": len(present),
            "absent_from_training": [id_names.get(c, str(c)) for c in missing]}
    return out


def _names(items, limit=20):
    if not items:
        return "none"
    return ", ".join(items[:limit]) + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def format_report(r):
    """The report as text (what ``tools/inspect_dataset.py`` prints)."""
    n = r["training_images"]
    kind = {True: "federated (LVIS per-image negative lists)",
            False: "exhaustive (no LVIS per-image lists)",
            None: "unknown"}[r["federated"]]
    masks = {True: "masks", False: "boxes only", None: "no annotations"}[r["has_masks"]]
    share = r["group_share_of_images"]
    ipc = r["images_per_class"]
    lines = [
        f"Dataset {r['dataset']} ({r['json_file']}): {kind}, {masks}",
        f"  images {r['images']:,} ({n:,} with objects: the training images), instances "
        f"{r['instances']:,}, crowd regions {r['crowd_regions']:,}, classes {r['classes']:,}",
        f"  rare / common / frequent: {r['groups']['r']} / {r['groups']['c']} / "
        f"{r['groups']['f']} (LVIS's absolute thresholds: rare 1-{RARE_MAX_IMAGES} training "
        f"images, common {RARE_MAX_IMAGES + 1}-{COMMON_MAX_IMAGES}, frequent more; here rare is "
        f"<= {share['r']:.3g}% of the training images, common <= {share['c']:.3g}%)",
        f"  training images per class: min {ipc['min']}, median {ipc['median']:g}, max "
        f"{ipc['max']}; classes with none: {len(r['classes_without_training_images'])} "
        f"({_names(r['classes_without_training_images'])})",
        "  repeat-factor sampling, r(c) = max(1, sqrt(t / f(c))):" + (
            f" the config's t = {r['repeat_threshold']:g}" if r["repeat_threshold"] is not None
            else " (the config does not use RepeatFactorTrainingSampler)"),
        "    t          classes oversampled  images repeated  largest repeat  expected epoch",
    ]
    for s in r["repeat_factors"]:
        mark = " <- config" if s["threshold"] == r["repeat_threshold"] else ""
        lines.append(
            f"    {s['threshold']:<10g} {s['classes_oversampled']:>19}  "
            f"{s['images_repeated']:>15,}  {s['largest_repeat']:>14.2f}  "
            f"{s['expected_epoch_images']:>10,.0f} ({s['epoch_ratio']:.2f}x){mark}")
    w = r["lda_importance_weights"]
    if w["min"] is not None:
        lines.append(f"  LDA importance weights (Eq. 5, {w['frequencies']} frequencies): "
                     f"{w['min']:.3g} to {w['max']:.3g} (ratio {w['ratio']:.3g}); median "
                     f"training row {w['row_median']:.3g}, rows above 5: "
                     f"{100 * w['rows_above_5']:.1f}%, effective share of rows "
                     f"1 / E[beta^2] = {w['effective_share']:.3f}")
    im = r.get("lda_weight_per_image")
    if im:
        lines.append(f"    per drawn image, beta's mean over its instances (L_b's scale on a "
                     f"one-image batch): mean {im['mean']:.2f}, sd {im['sd']:.2f}, median "
                     f"{im['median']:.3g}, 99th percentile {im['p99']:.3g}, max {im['max']:.3g}; "
                     f"images above 5: {100 * im['images_above_5']:.1f}%; the heaviest 10% of "
                     f"the images carry {100 * im['top10_share']:.0f}% of the weight")
    for name, e in r["eval_splits"].items():
        lines.append(f"  {name}: {e['images']:,} images, {e['classes_present']} classes with "
                     f"objects; absent from training: {len(e['absent_from_training'])} "
                     f"({_names(e['absent_from_training'])})")
    return "\n".join(lines)


def plot_class_histogram(r, out):
    """Training images per class, classes sorted by it, log scale, coloured by group."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    counts = np.asarray(r["image_counts"])
    order = np.argsort(-counts, kind="stable")
    groups = [r["class_groups"][i] for i in order]
    fig = Figure(figsize=(max(6.0, min(16.0, 0.04 * len(counts) + 4)), 4))
    ax = fig.add_subplot(111)
    ax.bar(np.arange(len(counts)), np.maximum(counts[order], 0.8), width=1.0,
           color=[GROUP_COLOURS.get(g, "grey") for g in groups])
    ax.set_yscale("log")
    for y in (RARE_MAX_IMAGES, COMMON_MAX_IMAGES):
        ax.axhline(y + 0.5, color="grey", lw=0.6, ls="--")
    ax.legend(handles=[Patch(color=GROUP_COLOURS[g], label=f"{label} ({r['groups'][g]})")
                       for g, label in (("f", "frequent"), ("c", "common"), ("r", "rare"))],
              loc="upper right")
    ax.set_xlabel("classes, by training images")
    ax.set_ylabel("training images (log)")
    ax.set_title(f"{r['dataset']}: {r['classes']} classes, {r['training_images']:,} images")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def write_report(r, out_dir):
    """``dataset_report.txt``, ``dataset_report.json`` and ``class_histogram.png``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "dataset_report.txt"), "w") as f:
        f.write(format_report(r) + "\n")
    with open(os.path.join(out_dir, "dataset_report.json"), "w") as f:
        json.dump(r, f, indent=1)
    return plot_class_histogram(r, os.path.join(out_dir, "class_histogram.png"))


def get_parser():
    import argparse

    p = argparse.ArgumentParser(
        description="Report on a long-tailed training set: sizes, r/c/f groups, training images "
        "per class, repeat-factor sampling at several thresholds, LDA's importance weights, "
        "classes of the evaluation splits without training images; writes a class histogram.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a registered training dataset (e.g. one of "
                     "$LDA_EXTRA_DATASETS, or lvis_embedded_many_train)")
    src.add_argument("--json", help="a COCO- or LVIS-format training file (with --image-root)")
    p.add_argument("--image-root", help="the folder the --json file's images are relative to")
    p.add_argument("--eval-datasets", nargs="*", default=None,
                   help="registered evaluation splits (default: <prefix>_val and <prefix>_test "
                   "of a --dataset named <prefix>_train, when registered)")
    p.add_argument("--eval-json", nargs="*", default=(), help="evaluation files (with --json)")
    p.add_argument("--config-file", help="a training config: its DATALOADER.SAMPLER_TRAIN and "
                   "REPEAT_THRESHOLD (default: the LVIS configs', RFS at t = 0.001)")
    p.add_argument("--thresholds", nargs="*", type=float, default=list(DEFAULT_THRESHOLDS),
                   help="other repeat-factor thresholds to show")
    p.add_argument("--out", help="folder of the text, JSON and class_histogram.png "
                   "(default: output/dataset_report/<dataset>)")
    return p


def _sampler(config_file):
    if not config_file:
        return 0.001, True
    cfg = get_project_cfg()
    cfg.merge_from_file(config_file)
    return (cfg.DATALOADER.REPEAT_THRESHOLD,
            cfg.DATALOADER.SAMPLER_TRAIN == "RepeatFactorTrainingSampler")


def main(argv=None):
    """``tools/inspect_dataset.py``: prints the report and writes its files; returns it."""
    args = get_parser().parse_args(argv)
    if args.json:
        if not args.image_root:
            raise SystemExit("--json needs --image-root")
        train = "inspect_dataset_train"
        register_lvis_format(train, args.json, args.image_root)
        evals = []
        for i, path in enumerate(args.eval_json):
            evals.append(f"inspect_dataset_eval{i}")
            register_lvis_format(evals[-1], path, args.image_root)
    else:
        train = args.dataset
        if train not in DatasetCatalog.list():
            raise SystemExit(f"--dataset {train!r} is not registered (register it with "
                             "$LDA_EXTRA_DATASETS, or give --json and --image-root)")
        evals = args.eval_datasets
        if evals is None:
            prefix = train[:-len("_train")] if train.endswith("_train") else None
            evals = [f"{prefix}_{s}" for s in ("val", "test")
                     if prefix and f"{prefix}_{s}" in DatasetCatalog.list()]
    threshold, rfs = _sampler(args.config_file)
    r = dataset_report(train, eval_datasets=evals, repeat_threshold=threshold, rfs=rfs,
                       thresholds=args.thresholds)
    print(format_report(r))
    out = args.out or os.path.join("output", "dataset_report", train)
    png = write_report(r, out)
    print(f"Written: {png}, {os.path.join(out, 'dataset_report.json')}")
    return r
