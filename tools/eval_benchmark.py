#!/usr/bin/env python
"""
LVIS evaluation benchmark: the hotcoco evaluator against detectron2's LVISEvaluator (lvis-api)
on an LVIS v1 val-shaped synthetic set, from model outputs (``Instances``) to the AP table.

    python tools/eval_benchmark.py --images 2000 5000 --backends hotcoco lvis-api
    python tools/eval_benchmark.py --images 19809 --backends hotcoco --tasks bbox segm

The set (``projects_lda.evaluation.synthetic``): 1,203 categories split 337 / 461 / 405 (r / c /
f), about 12.4 instances per image with polygon masks (245k at 19,809 images), federated
``neg_category_ids`` and ``not_exhaustive_category_ids``, 640 x 480 images, 300 detections per
image with full-image masks. Each (backend, size) runs in its own process; it reports

* ``wall_s``: evaluator construction (loading the ground truth) + every ``process()`` call +
  ``evaluate()`` (the making of the synthetic model outputs is not counted);
* ``process_s`` / ``evaluate_s`` / ``init_s``: the three parts; ``cpu_s``: the CPU time of the
  same three (steadier than wall time on a machine shared with other jobs);
* ``peak_rss_mb``: the process's peak RSS (``ru_maxrss``), and ``base_rss_mb`` its RSS before
  the evaluator was built (Python, torch, detectron2 and one image's outputs);
* the AP table of each task, and the largest difference between the backends.

``--metrics standard fixed pool`` adds AP-fixed and AP-pool (hotcoco backend) and
``--dets-per-image`` sets the detections per image (AP-fixed at LVIS v1 val size: 10,000 per
category x 1,203 categories over 19,809 images is about 610 per image).

``--backends lvis-api-grouped`` runs lvis-api's ``LVISEval`` on ``--category-group-size``
categories at a time (``projects_lda.evaluation.lvis_api_grouped``: the same numbers as one run):
the reference at LVIS v1 val size, where one ``LVISEval`` over all categories needs more than
the 24 GB of the development machine.

``--results-json`` also writes the LVIS server's results JSON with the hotcoco backend (its
cost, reported separately). ``--max-rss-gb`` skips lvis-api sizes whose extrapolated peak
would exceed it (from the smaller sizes measured in the same call), so a large size does not
exhaust the machine. Writes ``OUTPUT/eval_benchmark.json`` and ``.md``.
"""
import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("AP", "AP50", "APr", "APc", "APf")
DATASET = "eval_benchmark_val"

logger = logging.getLogger("eval_benchmark")


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def ground_truth(cache, num_images, seed):
    """The ground-truth JSON of ``num_images`` images (made once, kept in ``cache``)."""
    from projects_lda.evaluation.synthetic import make_lvis_like_gt

    path = Path(cache) / f"lvis_like_val_{num_images}_seed{seed}.json"
    if not path.is_file():
        gt = make_lvis_like_gt(num_images, seed=seed)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(gt))
        os.replace(tmp, path)
    return path


class GroupedLVISAPI:
    """detectron2's LVISEvaluator path (``instances_to_coco_json``, category ids + 1,
    ``LVISResults(max_dets=300)``, segm without boxes), with lvis-api's ``LVISEval`` run
    ``group_size`` categories at a time (``lvis_eval_by_category_group``: the same numbers as one
    run, in the memory LVIS v1 val size needs)."""

    def __init__(self, gt_path, tasks, group_size):
        self._gt_path, self._tasks, self._group_size = gt_path, tasks, group_size
        self._rows = []

    def reset(self):
        self._rows = []

    def process(self, inputs, outputs):
        from detectron2.evaluation.coco_evaluation import instances_to_coco_json

        for inp, out in zip(inputs, outputs):
            for r in instances_to_coco_json(out["instances"], inp["image_id"]):
                r["category_id"] += 1
                self._rows.append(r)

    def evaluate(self):
        from lvis import LVIS, LVISResults

        from projects_lda.evaluation.lvis_api_grouped import lvis_eval_by_category_group

        gt = LVIS(self._gt_path)
        results = {}
        for task in self._tasks:
            rows = self._rows
            if task == "segm":  # as detectron2: the mask's own area, not the box's
                rows = [{k: v for k, v in r.items() if k != "bbox"} for r in rows]
            ev = lvis_eval_by_category_group(gt, LVISResults(gt, rows, max_dets=300), task,
                                             group_size=self._group_size)
            results[task] = {k: float(v * 100) for k, v in ev.get_results().items()
                             if k.startswith("AP")}
            del ev, rows
        return results


def run_one(backend, num_images, tasks, seed, cache, out_dir, results_json,
            metrics=("standard",), dets=300, group_size=100):
    """Times one backend on one size in this process; prints one JSON line."""
    import torch

    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import LVISEvaluator

    from projects_lda.evaluation import HotcocoLVISEvaluator
    from projects_lda.evaluation.synthetic import index_by_image, make_detections

    torch.set_num_threads(1)
    gt_path = ground_truth(cache, num_images, seed)
    gt = index_by_image(json.loads(gt_path.read_text()))
    MetadataCatalog.get(DATASET).set(
        json_file=str(gt_path), evaluator_type="lvis",
        thing_classes=[c["name"] for c in gt["categories"]])
    with_masks = "segm" in tasks
    img0 = gt["images"][0]  # every image has the same size
    buf = torch.zeros((dets, img0["height"], img0["width"]), dtype=torch.bool) if with_masks \
        else None
    make_detections(gt, img0, dets, seed=seed, with_masks=with_masks, mask_buffer=buf)
    base_rss = _rss_mb()
    out_dir = Path(out_dir) / f"{backend}_{num_images}"
    start, cpu_start = time.perf_counter(), time.process_time()
    if backend == "hotcoco":
        evaluator = HotcocoLVISEvaluator(DATASET, tasks=tasks, distributed=False,
                                         output_dir=str(out_dir), max_dets_per_image=300,
                                         write_results_json=results_json, metrics=metrics)
    elif backend == "lvis-api-grouped":
        evaluator = GroupedLVISAPI(str(gt_path), tasks, group_size)
    else:
        evaluator = LVISEvaluator(DATASET, tasks=tasks, distributed=False, output_dir=None,
                                  max_dets_per_image=300)
    evaluator.reset()
    init_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    process_s = 0.0
    for img in gt["images"]:
        inst = make_detections(gt, img, dets, seed=seed, with_masks=with_masks, mask_buffer=buf)
        t, c = time.perf_counter(), time.process_time()
        evaluator.process([{"image_id": img["id"]}], [{"instances": inst}])
        process_s += time.perf_counter() - t
        cpu_s += time.process_time() - c
        del inst
    t, c = time.perf_counter(), time.process_time()
    results = evaluator.evaluate()
    evaluate_s = time.perf_counter() - t
    cpu_s += time.process_time() - c
    record = {
        "backend": backend, "images": num_images, "tasks": list(tasks),
        "results_json": bool(results_json), "metrics": list(metrics), "dets_per_image": dets,
        "wall_s": init_s + process_s + evaluate_s, "init_s": init_s,
        "process_s": process_s, "evaluate_s": evaluate_s, "cpu_s": cpu_s,
        "peak_rss_mb": _rss_mb(), "base_rss_mb": base_rss,
        "results": {t: dict(results[t]) for t in tasks},
    }
    if backend == "lvis-api-grouped":
        record["category_group_size"] = group_size
    print("RECORD " + json.dumps(record), flush=True)


def filter_savings(num_images, seed, cache):
    """
    What dropping the detections of categories an image was never checked for saves: per
    image, hotcoco's matching of all 300 detections against only those that can count (bbox:
    update; segm: mask encoding + update), timed separately, with the metrics of both ways.
    """
    import numpy as np
    import torch
    import hotcoco

    from projects_lda.evaluation.lvis_evaluation import select_detections
    from projects_lda.evaluation.synthetic import index_by_image, make_detections

    torch.set_num_threads(1)
    gt = index_by_image(json.loads(ground_truth(cache, num_images, seed).read_text()))
    cats = gt["categories"]
    img0 = gt["images"][0]
    buf = torch.zeros((300, img0["height"], img0["width"]), dtype=torch.bool)
    streams = {(t, w): hotcoco.StreamingEval(cats, t, lvis_style=True)
               for t in ("bbox", "segm") for w in ("all", "kept")}
    seconds = {k: 0.0 for k in streams}
    kept_total = 0
    for img in gt["images"]:
        inst = make_detections(gt, img, 300, seed=seed, mask_buffer=buf)
        gts = gt["_by_image"][img["id"]]
        classes = inst.pred_classes + 1
        relevant = torch.tensor(sorted({a["category_id"] for a in gts}
                                       | set(img["neg_category_ids"])))
        top, kept = select_detections(inst.scores, classes, 300, relevant)
        kept_total += len(kept)
        masks = inst.pred_masks.numpy()
        for way, idx in (("all", top), ("kept", kept)):
            t = time.perf_counter()
            xywh = inst.pred_boxes.tensor[idx].numpy().astype(np.float64)
            xywh[:, 2:] -= xywh[:, :2]
            dets = np.column_stack([np.full(len(idx), img["id"]), xywh,
                                    inst.scores[idx].numpy(), classes[idx].numpy()])
            streams["bbox", way].update([img], gts, dets)
            t2 = time.perf_counter()
            rows = [{"image_id": img["id"], "category_id": c,
                     "segmentation": hotcoco.mask.encode(masks[i]), "score": sc}
                    for i, sc, c in zip(idx.tolist(), inst.scores[idx].tolist(),
                                        classes[idx].tolist())]
            streams["segm", way].update([img], gts, rows)
            t3 = time.perf_counter()
            seconds["bbox", way] += t2 - t
            seconds["segm", way] += t3 - t2
    out = {"images": num_images, "kept_fraction": kept_total / (300 * num_images)}
    for (task, way), stream in streams.items():
        ev = stream.finalize()
        ev.accumulate()
        ev.summarize()
        out[f"{task}/{way}"] = {"ms_per_image": 1000 * seconds[task, way] / num_images,
                                "AP": 100 * ev.get_results()["AP"]}
    return out


def markdown(records):
    lines = ["| evaluator | images | tasks | CPU time (s) | wall time (s) | peak RSS (MB) | "
             "peak RSS above start (MB) | " + " / ".join(METRICS) + " (bbox) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        if r.get("skipped"):
            lines.append(f"| {r['backend']} | {r['images']} | {'+'.join(r['tasks'])} | "
                         f"not run: {r['skipped']} | | | | |")
            continue
        aps = " / ".join(f"{r['results']['bbox'][k]:.2f}" for k in METRICS)
        name = r["backend"] + (" + results JSON" if r.get("results_json") else "")
        if r.get("metrics", ["standard"]) != ["standard"]:
            name += f" ({'+'.join(r['metrics'])}, {r['dets_per_image']} per image)"
        lines.append(f"| {name} | {r['images']} | {'+'.join(r['tasks'])} | "
                     f"{r.get('cpu_s', float('nan')):.1f} | {r['wall_s']:.1f} "
                     f"| {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['base_rss_mb']:.0f} "
                     f"| {aps} |")
    # ratios and the largest AP difference where both backends ran on a size
    by = {(r["backend"], r["images"], tuple(r["tasks"])): r for r in records
          if not r.get("skipped") and not r.get("results_json")
          and r.get("metrics", ["standard"]) == ["standard"] and r.get("dets_per_image") == 300}
    lines.append("")
    for (backend, n, tasks), ref in sorted(by.items()):
        ours = by.get(("hotcoco", n, tasks))
        if not backend.startswith("lvis-api") or ours is None:
            continue
        diff = max(abs(ours["results"][t][k] - ref["results"][t][k])
                   for t in tasks for k in ref["results"][t])
        cpu = ref.get("cpu_s", math.nan) / ours.get("cpu_s", math.nan)
        lines.append(f"* {n} images, {'+'.join(tasks)}, against {backend}: hotcoco "
                     f"{cpu:.1f}x less CPU time, "
                     f"{ref['wall_s'] / ours['wall_s']:.1f}x less wall time, "
                     f"{ref['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x less peak RSS; "
                     f"largest metric difference {diff:.2g} (percent points)")
    return "\n".join(lines) + "\n"


def _extrapolated_rss(records, backend, tasks, n):
    pts = sorted((r["images"], r["peak_rss_mb"]) for r in records
                 if r["backend"] == backend and tuple(r["tasks"]) == tuple(tasks)
                 and not r.get("skipped"))
    if len(pts) < 1:
        return None
    (n0, m0), (n1, m1) = (pts[0], pts[-1]) if len(pts) > 1 else ((0, 0.0), pts[0])
    slope = (m1 - m0) / max(n1 - n0, 1)
    return m1 + slope * (n - n1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", type=int, default=[2000, 5000])
    parser.add_argument("--backends", nargs="+", default=["hotcoco", "lvis-api"],
                        choices=["hotcoco", "lvis-api", "lvis-api-grouped"],
                        help="lvis-api-grouped: lvis-api's LVISEval a group of categories at a "
                        "time (same numbers, a fraction of the memory)")
    parser.add_argument("--category-group-size", type=int, default=100,
                        help="categories per LVISEval run of lvis-api-grouped")
    parser.add_argument("--tasks", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--results-json", action="store_true",
                        help="also time hotcoco writing the LVIS server's results JSON")
    parser.add_argument("--metrics", nargs="+", default=["standard"],
                        choices=["standard", "fixed", "pool"], help="hotcoco backend only")
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rss-gb", type=float, default=7.0,
                        help="skip a run whose extrapolated peak RSS is above this")
    parser.add_argument("--output", default="output/eval_benchmark")
    parser.add_argument("--filter-savings", type=int, metavar="IMAGES",
                        help="only measure what skipping the detections that cannot count "
                        "saves, on this many images")
    parser.add_argument("--run-one", nargs=2, metavar=("BACKEND", "IMAGES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.output)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tasks = tuple(args.tasks)
    if args.filter_savings:
        res = filter_savings(args.filter_savings, args.seed, cache)
        print(json.dumps(res, indent=2))
        (out / "filter_savings.json").write_text(json.dumps(res, indent=2))
        return
    if args.run_one:
        run_one(args.run_one[0], int(args.run_one[1]), tasks, args.seed, cache, out,
                args.results_json, tuple(args.metrics), args.dets_per_image,
                args.category_group_size)
        return
    logging.basicConfig(level=logging.INFO, format="[eval_benchmark] %(message)s")
    summary = out / "eval_benchmark.json"
    records = json.loads(summary.read_text()) if summary.is_file() else []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for n in sorted(args.images):
        runs = [(b, False) for b in args.backends]
        if args.results_json:
            runs.append(("hotcoco", True))
        for backend, rj in runs:
            key = (backend, n, list(tasks), rj, args.metrics, args.dets_per_image)
            records = [r for r in records if (r["backend"], r["images"], r["tasks"],
                                              r.get("results_json", False),
                                              r.get("metrics", ["standard"]),
                                              r.get("dets_per_image", 300)) != key]
            guess = _extrapolated_rss(records, backend, tasks, n)
            if backend == "lvis-api" and guess and guess > args.max_rss_gb * 1024:
                msg = f"extrapolated peak RSS {guess / 1024:.1f} GB > --max-rss-gb"
                logger.info("%s %d: %s", backend, n, msg)
                records.append({"backend": backend, "images": n, "tasks": list(tasks),
                                "skipped": msg})
                continue
            logger.info("%s, %d images, %s%s", backend, n, "+".join(tasks),
                        " + results JSON" if rj else "")
            ground_truth(cache, n, args.seed)  # made outside the timed process
            cmd = [sys.executable, __file__, "--run-one", backend, str(n), "--tasks", *tasks,
                   "--seed", str(args.seed), "--output", str(out), "--metrics", *args.metrics,
                   "--dets-per-image", str(args.dets_per_image),
                   "--category-group-size", str(args.category_group_size)]
            cmd += ["--results-json"] if rj else []
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            found = [line for line in proc.stdout.splitlines() if line.startswith("RECORD ")]
            if proc.returncode != 0 or not found:
                tail = (proc.stderr or proc.stdout)[-2000:]
                raise SystemExit(f"{backend} at {n} images failed (exit {proc.returncode}):\n"
                                 f"{tail}")
            record = json.loads(found[-1][len("RECORD "):])
            logger.info("  %.1f s (init %.1f, process %.1f, evaluate %.1f), peak RSS %.0f MB",
                        record["wall_s"], record["init_s"], record["process_s"],
                        record["evaluate_s"], record["peak_rss_mb"])
            records.append(record)
            summary.write_text(json.dumps(records, indent=2))
    table = markdown(records)
    (out / "eval_benchmark.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
