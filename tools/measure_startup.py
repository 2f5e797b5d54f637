#!/usr/bin/env python
"""
Start-up of an LVIS-scale training run, phase by phase: time and memory of

1. building the model of the config (R-50 FPN, 1,203 classes);
2. building the training loader: registration, parsing and loading the LVIS-format JSON into
   detectron2 dicts, filtering, repeat factors (t = 0.001) and detectron2's serialisation of the
   dicts into one buffer;
3. the training-set class statistics of the predictors (the providers LDA and the peers call at
   the first training step: sampled instance frequencies and image counts);
4. the data loader's start with ``DATALOADER.NUM_WORKERS`` workers (first batch), with the RSS
   and PSS of each worker (forked workers share the parent's pages; PSS counts them once).

For each size it generates an LVIS v1-shaped dataset (projects_lda/data/lvis_shaped.py) under
``--cache`` and measures in a fresh process; it prints one table, with the peak RSS (VmHWM) of
the main process and how many times an annotation file was parsed.

    python tools/measure_startup.py --sizes 10k 30k 100k --cache /tmp/lvis_shaped

Linux only (/proc). The numbers depend on the machine and its load: compare sizes in one run.
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

CONFIG = os.path.join(ROOT, "configs/LVISv1/lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml")
MIB = 1024.0


class _ParseCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record):
        if record.getMessage().startswith("Parsing "):
            self.count += 1


def measure_one(size, cache, config, workers, batch):
    """Runs in a fresh process: returns a dict of figures for one dataset size."""
    import torch

    import train_net
    from measure_rss import children, proc_kib  # /proc readers
    from projects_lda.data.class_freq import frequency_provider, image_count_provider
    from projects_lda.data import register_lvis_format
    from projects_lda.data.lvis_shaped import generate_lvis_shaped

    torch.set_num_threads(1)
    paths = generate_lvis_shaped(os.path.join(cache, str(size)), size)
    counter = _ParseCounter()
    ds_logger = logging.getLogger("projects_lda.data.datasets")
    ds_logger.setLevel(logging.INFO)
    ds_logger.addHandler(counter)
    me = os.getpid()
    row = {"size": size, "images": paths["train_images"], "instances": paths["train_annotations"],
           "rss_start": proc_kib(me, "VmRSS") / MIB}
    register_lvis_format("startup_train", paths["train_json"], paths["image_root"])

    with tempfile.TemporaryDirectory() as tmp:
        args = argparse.Namespace(
            config_file=config, eval_only=False, resume=False, num_gpus=1,
            opts=["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('startup_train',)",
                  "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", str(workers),
                  "SOLVER.IMS_PER_BATCH", str(batch), "OUTPUT_DIR", tmp],
        )
        cfg = train_net.setup(args)
        logging.getLogger("detectron2").setLevel(logging.WARNING)
        t = time.perf_counter()
        train_net.Trainer.build_model(cfg)
        row["model_s"] = time.perf_counter() - t
        t = time.perf_counter()
        loader = train_net.Trainer.build_train_loader(cfg)
        row["loader_s"] = time.perf_counter() - t
        row["rss_after_loader"] = proc_kib(me, "VmRSS") / MIB
        row["peak_after_loader"] = proc_kib(me, "VmHWM") / MIB
        t = time.perf_counter()
        freq = frequency_provider(cfg)()
        counts = image_count_provider(cfg)()
        row["class_stats_s"] = time.perf_counter() - t
        assert freq.numel() == counts.numel() == 1203
        t = time.perf_counter()
        it = iter(loader)
        next(it)
        row["first_batch_s"] = time.perf_counter() - t
        time.sleep(2.0)  # let every worker load its first batch
        kids = children(me)
        row["workers"] = len(kids)
        row["worker_rss"] = [proc_kib(k, "VmRSS") / MIB for k in kids]
        row["worker_pss"] = [proc_kib(k, "Pss", "smaps_rollup") / MIB for k in kids]
        row["main_pss"] = proc_kib(me, "Pss", "smaps_rollup") / MIB
        row["peak_main"] = proc_kib(me, "VmHWM") / MIB
        row["json_parses"] = counter.count
        row["startup_s"] = row["model_s"] + row["loader_s"] + row["class_stats_s"] + row["first_batch_s"]
        del it, loader
    return row


def print_table(rows):
    print(
        f"\n{'size':>6} {'images':>7} {'instances':>9} | {'model s':>7} {'loader s':>8} "
        f"{'stats s':>7} {'1st batch s':>11} {'total s':>7} | {'peak RSS MiB':>12} "
        f"{'main PSS':>8} {'worker RSS (each)':>17} {'worker PSS (each)':>17} {'total PSS':>9} "
        f"| parses"
    )
    for r in rows:
        wr, wp = r["worker_rss"], r["worker_pss"]
        print(
            f"{r['size']:>6} {r['images']:>7} {r['instances']:>9} | {r['model_s']:7.1f} "
            f"{r['loader_s']:8.1f} {r['class_stats_s']:7.2f} {r['first_batch_s']:11.1f} "
            f"{r['startup_s']:7.1f} | {r['peak_main']:12.0f} {r['main_pss']:8.0f} "
            f"{(sum(wr) / max(len(wr), 1)):17.0f} {(sum(wp) / max(len(wp), 1)):17.0f} "
            f"{r['main_pss'] + sum(wp):9.0f} | {r['json_parses']}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["10k", "30k", "100k"])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lvis_shaped"))
    parser.add_argument("--config-file", default=CONFIG)
    parser.add_argument("--workers", type=int, default=4, help="DATALOADER.NUM_WORKERS")
    parser.add_argument("--batch", type=int, default=2, help="SOLVER.IMS_PER_BATCH (per process)")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: one size, JSON out
    args = parser.parse_args(argv)
    if args.one:
        size = int(args.one) if args.one.isdigit() else args.one
        row = measure_one(size, args.cache, args.config_file, args.workers, args.batch)
        print("STARTUP_ROW " + json.dumps(row), flush=True)
        return [row]
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", size, "--cache", args.cache,
               "--config-file", args.config_file, "--workers", str(args.workers),
               "--batch", str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("STARTUP_ROW ")]
        if out.returncode or not lines:
            sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
            raise SystemExit(f"measuring size {size} failed (exit code {out.returncode})")
        rows.append(json.loads(lines[-1][len("STARTUP_ROW "):]))
        print_table(rows[-1:])
    print(f"\nAll sizes ({args.workers} workers, batch {args.batch}, config {os.path.relpath(args.config_file, ROOT)}):")
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
