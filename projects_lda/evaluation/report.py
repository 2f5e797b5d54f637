"""
The evaluation report of any run: from a results JSON in the LVIS server's format (what
``TEST.LVIS_EVAL.WRITE_RESULTS_JSON`` writes) and its evaluation file, the files of
:func:`write_evaluation_report`:

* ``per_class.csv`` / ``per_class.md``: per category its file id, name, r/c/f group, training
  images, objects in the evaluation set, detections kept, and AP per task (sorted by training
  images in the Markdown);
* ``report.md``: the AP table (AP, AP50, AP75, APs/m/l, APr/c/f) per task, the TIDE error
  breakdown (AP50 points each error type costs), where the objects go among sibling classes
  (when the categories have groups: COCO's ``supercategory`` or the embedded dataset's), the
  classes never predicted and the evaluated classes without training images;
* ``report.json``: the same numbers.

It is written at the end of an evaluation with ``TEST.LVIS_EVAL.REPORT True`` (into
``OUTPUT_DIR/inference/<dataset>/report/``), or afterwards by ``tools/eval_report.py`` from a
run's saved results. The analysis functions are :mod:`projects_lda.evaluation.analysis`'s,
those the benchmark uses.
"""
import csv
import json
import os
from collections import Counter

from .analysis import (TIDE_ERRORS, evaluate_results, group_confusions, per_class_ap,
                       tide_breakdown)
from .coco_protocol import (COCO_METRICS, check_exhaustive, coco_ground_truth, coco_metrics,
                            protocol_line)
from .ground_truth import load_ground_truth
from .results_check import check_results

__all__ = ["sibling_groups", "write_evaluation_report", "training_image_counts",
           "SUMMARY_METRICS", "RESULTS_JSON"]

# the detections file of an evaluation (the LVIS server's format), which the report reads
RESULTS_JSON = "lvis_instances_results.json"

SUMMARY_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
CONFUSION_KEYS = ("own_class", "group_sibling", "other_group", "missed")


def sibling_groups(categories):
    """
    ``category id -> group`` when the categories have groups, else None: COCO's
    ``supercategory`` when every category has one, else the embedded dataset's confusable
    groups when every name is one of its classes (the small variant's shape, the many-class
    variant's generator group).
    """
    if categories and all(c.get("supercategory") for c in categories):
        groups = {c["id"]: c["supercategory"] for c in categories}
        return groups.__getitem__
    from ..worlds.embedded import class_groups

    known = class_groups()
    if not categories or not all(c["name"] in known for c in categories):
        return None
    groups = {c["id"]: known[c["name"]] for c in categories}
    return groups.__getitem__


def training_image_counts(dataset_name):
    """{file category id: training images} from a registered training dataset's metadata
    (``class_image_count``), or None."""
    from detectron2.data import MetadataCatalog

    if not dataset_name:
        return None
    counts = MetadataCatalog.get(dataset_name).get("class_image_count", None)
    return None if counts is None else {int(c["id"]): int(c["image_count"]) for c in counts}


def _read_rows(results):
    if isinstance(results, (list, tuple)):
        return list(results)
    with open(results) as f:
        return json.load(f)


def _fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def write_evaluation_report(gt_json, results, out_dir, *, tasks=None, federated=None,
                            frequency=None, train_counts=None, max_dets=300, protocol="lvis"):
    """
    Write the report files (module docstring) into ``out_dir`` and return its numbers.

    Args:
        gt_json (str): the evaluation set's COCO- or LVIS-format file.
        results (str or list): the results JSON (path or rows), file category ids.
        tasks (tuple or None): "bbox" / "segm"; None: "segm" too when the rows have masks and
            the file has segmentations.
        federated, frequency: as :func:`projects_lda.evaluation.ground_truth.load_ground_truth`.
        train_counts (dict or None): {file category id: training images}.
        max_dets (int): the per-image cap of the evaluation (LVIS: 300).
        protocol (str): whose numbers the summary table holds: "lvis" (lvis-api's) or "coco"
            (pycocotools' COCOeval on every row, an exhaustive file only:
            :mod:`.coco_protocol`). The per-class AP, TIDE and confusions are hotcoco's LVIS
            evaluation either way.

    The rows are checked against the file first (:func:`.results_check.check_results`).
    """
    rows = _read_rows(results)
    gt, federated = load_ground_truth(gt_json, federated=federated, frequency=frequency)
    check_exhaustive(protocol, federated, str(gt_json))
    check_results(rows, gt.get_img_ids(), gt.get_cat_ids(), gt_json,
                  results if isinstance(results, str) else "the results")
    anns = gt.load_anns(gt.get_ann_ids())
    if tasks is None:
        has_masks = any(a.get("segmentation") for a in anns)
        tasks = ("bbox", "segm") if has_masks and any("segmentation" in r for r in rows) \
            else ("bbox",)
    cats = sorted(gt.load_cats(gt.get_cat_ids()), key=lambda c: c["id"])
    group_of = sibling_groups(cats)
    objects = Counter(a["category_id"] for a in anns if not a.get("iscrowd", 0))
    detections = Counter(r["category_id"] for r in rows)
    train_counts = train_counts or {}
    out = {"gt_json": str(gt_json), "federated": federated, "num_detections": len(rows),
           "protocol": protocol, "tasks": {}}
    coco_gt = coco_ground_truth(str(gt_json)) if protocol == "coco" else None
    for task in tasks:
        _, ev = evaluate_results(gt, rows, task, max_dets)
        stats = ev.get_results()
        summary = coco_metrics(coco_gt, rows, task)[0] if coco_gt is not None else \
            {m: 100.0 * float(stats[m]) for m in SUMMARY_METRICS}
        out["tasks"][task] = {
            "summary": summary,
            "per_class_ap": per_class_ap(gt, ev),
            "tide": tide_breakdown(ev),
            "group_confusions": group_confusions(ev, group_of) if group_of else None,
        }
    out["classes"] = [
        {"id": c["id"], "name": c["name"], "group": c.get("frequency"),
         "train_images": train_counts.get(c["id"]), "eval_objects": objects.get(c["id"], 0),
         "detections": detections.get(c["id"], 0),
         **{f"{t}_AP": out["tasks"][t]["per_class_ap"].get(c["id"]) for t in tasks}}
        for c in cats]
    os.makedirs(out_dir, exist_ok=True)
    _write_csv(os.path.join(out_dir, "per_class.csv"), out["classes"])
    with open(os.path.join(out_dir, "per_class.md"), "w") as f:
        f.write(_per_class_markdown(out["classes"], tasks))
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(_report_markdown(out, tasks, train_counts))
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def _write_csv(path, classes):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(classes[0]))
        writer.writeheader()
        writer.writerows(classes)


def _per_class_markdown(classes, tasks):
    head = ["id", "name", "group", "training images", "objects (eval)", "detections"] + \
        [f"{t} AP" for t in tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(classes, key=lambda c: (-(c["train_images"] or 0), c["id"]))
    for c in order:
        cells = [str(c["id"]), c["name"], c["group"] or "-",
                 "-" if c["train_images"] is None else str(c["train_images"]),
                 str(c["eval_objects"]), str(c["detections"])] + \
            [_fmt(c[f"{t}_AP"]) for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _report_markdown(out, tasks, train_counts):
    kind = "federated (LVIS rules)" if out["federated"] else \
        "exhaustive (a detection of a class absent from an image is a false positive)"
    metrics = COCO_METRICS if out["protocol"] == "coco" else SUMMARY_METRICS
    lines = [f"# Evaluation report: {os.path.basename(out['gt_json'])}", "",
             f"{out['num_detections']} detections; the file is {kind}.", "",
             f"AP: {protocol_line(out['protocol'])}.", "",
             "| task | " + " | ".join(metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for t in tasks:
        s = out["tasks"][t]["summary"]
        lines.append(f"| {t} | " + " | ".join(_fmt(s[m]) for m in metrics) + " |")
    lines += ["", "## TIDE: AP50 points lost to each error type", "",
              "| task | AP50 | " + " | ".join(TIDE_ERRORS) + " |",
              "|---|---|" + "---|" * len(TIDE_ERRORS)]
    for t in tasks:
        tide = out["tasks"][t]["tide"]
        lines.append(f"| {t} | {tide['ap50']:.1f} | " +
                     " | ".join(f"{tide['delta_ap'][e]:.1f}" for e in TIDE_ERRORS) + " |")
    lines += ["", "Cls: right box, wrong class; Loc: right class, poor box; Both; Dupe: "
              "duplicate; Bkg: detection on background; Miss: object never detected.", ""]
    confusions = {t: out["tasks"][t]["group_confusions"] for t in tasks}
    if any(confusions.values()):
        lines += ["## Where the objects go (detections of score >= 0.3, IoU >= 0.5), %", "",
                  "| task | own class | a sibling (same group) | another group | missed |",
                  "|---|---|---|---|---|"]
        for t, g in confusions.items():
            if g:
                lines.append(f"| {t} | " + " | ".join(f"{g[k]:.1f}" for k in CONFUSION_KEYS)
                             + " |")
        lines.append("")
    else:
        lines += ["No sibling analysis: the categories have no groups (COCO's 'supercategory').",
                  ""]
    never = [c for c in out["classes"] if c["eval_objects"] and not c["detections"]]
    lines.append(f"Classes with objects here but never predicted: {len(never)}" +
                 (": " + ", ".join(c["name"] for c in never[:30]) if never else "") +
                 (" ..." if len(never) > 30 else ""))
    if train_counts:
        untrained = [c for c in out["classes"] if c["eval_objects"] and not c["train_images"]]
        lines.append(f"\nEvaluated classes without training images: {len(untrained)}" +
                     (": " + ", ".join(c["name"] for c in untrained[:30]) if untrained else ""))
    lines.append("\nPer class: per_class.md / per_class.csv.")
    return "\n".join(lines) + "\n"


def get_parser():
    import argparse

    p = argparse.ArgumentParser(
        description="Evaluation report of a run from its saved results: per-class AP (CSV, "
        "Markdown) with r/c/f group and training images, TIDE breakdown, sibling confusions.")
    p.add_argument("--run", help="a run's OUTPUT_DIR (its config.yaml and "
                   "inference/<dataset>/lvis_instances_results.json)")
    p.add_argument("--dataset", help="with --run: the test dataset (default: every one of "
                   "DATASETS.TEST with saved results)")
    p.add_argument("--gt", help="instead of --run: the evaluation set's annotation file")
    p.add_argument("--results", help="with --gt: the results JSON (file category ids)")
    p.add_argument("--train-dataset", help="the registered training set (r/c/f groups and "
                   "training images per class; default with --run: DATASETS.TRAIN[0])")
    p.add_argument("--max-dets", type=int, default=None, help="per-image cap (default: the "
                   "run's TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE, else 300)")
    p.add_argument("--protocol", choices=("lvis", "coco"), default=None, help="whose AP: "
                   "lvis-api's (lvis) or pycocotools' COCOeval's (coco, exhaustive files only); "
                   "default: the run's TEST.LVIS_EVAL.PROTOCOL, else lvis")
    p.add_argument("--out", help="output folder (default: next to the results, report/)")
    return p


def main(argv=None):
    """``tools/eval_report.py``; returns {dataset or results file: report numbers}."""
    from detectron2.config import CfgNode
    from detectron2.data import MetadataCatalog

    from .ground_truth import training_frequencies

    args = get_parser().parse_args(argv)
    jobs = []  # (label, gt json, results, out, federated, has_masks)
    train, max_dets, protocol = args.train_dataset, args.max_dets, args.protocol
    if args.run:
        with open(os.path.join(args.run, "config.yaml")) as f:
            cfg = CfgNode.load_cfg(f)
        train = train or (cfg.DATASETS.TRAIN[0] if len(cfg.DATASETS.TRAIN) else None)
        max_dets = max_dets or cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE
        protocol = protocol or cfg.TEST.LVIS_EVAL.get("PROTOCOL", "lvis")
        for name in [args.dataset] if args.dataset else cfg.DATASETS.TEST:
            folder = os.path.join(args.run, "inference", name)
            results = os.path.join(folder, RESULTS_JSON)
            if not os.path.isfile(results):
                if args.dataset:
                    raise SystemExit(f"{results} not found: evaluate with "
                                     "TEST.LVIS_EVAL.WRITE_RESULTS_JSON True (or REPORT True)")
                continue
            meta = MetadataCatalog.get(name)
            jobs.append((name, meta.json_file, results, args.out or os.path.join(folder, "report"),
                         meta.get("annotation_kind", None), meta.get("has_masks", None)))
        if not jobs:
            raise SystemExit(f"no saved results under {args.run}/inference/*/{RESULTS_JSON}: "
                             "evaluate with TEST.LVIS_EVAL.WRITE_RESULTS_JSON True")
    elif args.gt and args.results:
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.results)), "report")
        jobs.append((args.results, args.gt, args.results, out, None, None))
    else:
        raise SystemExit("give --run, or --gt and --results")
    reports = {}
    for label, gt, results, out, federated, has_masks in jobs:
        _validated(gt)
        r = write_evaluation_report(
            gt, results, out, tasks=("bbox",) if has_masks is False else None,
            federated=federated, frequency=training_frequencies(train),
            train_counts=training_image_counts(train), max_dets=max_dets or 300,
            protocol=protocol or "lvis")
        print(f"{label}: " + ", ".join(f"{t} AP {v['summary']['AP']:.1f}"
                                      for t, v in r["tasks"].items())
              + f" ({protocol_line(r['protocol'])}) -> {out}")
        reports[label] = r
    return reports


def _validated(gt_json):
    """Checks the annotation file as the loader does (errors name the file, id, field, value)
    and logs its warnings, before hotcoco reads it."""
    import json
    import logging

    from ..data.annotation_file import validate
    from ..data.validation import annotation_kind

    with open(gt_json) as f:
        data = json.load(f)
    kind_warning = annotation_kind(data["images"], gt_json).warning  # logged by the evaluation
    for warning in validate(data, gt_json)[1]["warnings"]:
        if warning != kind_warning:
            logging.getLogger(__name__).warning(warning)
