#!/usr/bin/env python
"""
Measurements behind docs/scale.md, docs/performance.md, docs/reliability.md and docs/datasets.md.

    python tools/measure.py make-lvis-shaped --size 100k --root /tmp/lvis_shaped_100k
    python tools/measure.py startup --sizes 10k 30k 100k
    python tools/measure.py configs                     # all 23 configs/LVISv1 configs
    python tools/measure.py predictor --rounds 10       # box predictors at LVIS shape
    python tools/measure.py step --rounds 4             # whole R-50 steps at LVIS shape
    python tools/measure.py syncs                       # host syncs, ops, kernels per step
    python tools/measure.py rss --iters 300 --every 25  # memory of a long training run
    python tools/measure.py profile \
        --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml
    python tools/measure.py class-ap-spread --n 5 14 40 60
    python tools/measure.py mask-head --rois 100 300 800 --chunks 0 8 16 32 64 128

``python tools/measure.py COMMAND --help`` says what each one measures and prints. The LVIS-shape
code (predictor, step, configs) is projects_lda/benchmark/lvis_rehearsal.py; the LVIS v1-shaped
data, projects_lda/worlds/lvis_shaped.py. startup and rss read /proc (Linux only).
"""
import argparse
import glob
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from detectron2.engine import HookBase
from detectron2.utils.events import EventStorage

from projects_lda.benchmark import lvis_rehearsal
from projects_lda.data import register_lvis_format
from projects_lda.data.class_freq import frequency_provider, image_count_provider
from projects_lda.worlds.lvis_shaped import (
    SIZES,
    extra_datasets_spec,
    generate_lvis_shaped,
    register_lvis_shaped,
)
from projects_lda.engine.defaults import Trainer, setup
from projects_lda.config import get_project_cfg
from projects_lda.benchmark.host_syncs import SYNC_OPS

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout: its configs/
LVIS_CONFIGS = str(REPO_ROOT / "configs/LVISv1")
EMBEDDED_LDA = str(REPO_ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml")
LVIS_LDA = str(REPO_ROOT / "configs/LVISv1/lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml")
CACHE = os.path.join(tempfile.gettempdir(), "lvis_shaped")
MIB = 1024.0  # KiB per MiB (/proc reports KiB)


def _size(text):
    """A size of :data:`SIZES` or a number of training images."""
    return int(text) if text.isdigit() else text


def _setup(config_file, opts):
    return setup(argparse.Namespace(config_file=config_file, opts=list(opts), eval_only=False,
                                    resume=False, num_gpus=1))


# ------------------------------------------------------------------------- make-lvis-shaped
def make_lvis_shaped(args):
    """
    Writes an LVIS v1-shaped dataset (projects_lda/worlds/lvis_shaped.py): LVIS v1 field names, its
    1,203 categories with the 337 / 461 / 405 rare / common / frequent split, ~12.7 instances per
    training image, polygon masks, and a small pool of 640x480 images shared by all records.
    Prints the LDA_EXTRA_DATASETS value that registers the two splits as lvis_shaped_train /
    lvis_shaped_val for train_net.py. Labels and images are unrelated: what trains on it
    measures time and memory, not accuracy.
    """
    start = time.perf_counter()
    paths = generate_lvis_shaped(args.root, _size(args.size), seed=args.seed,
                                 pool_size=args.pool_size, force=args.force)
    print(f"train: {paths['train_images']} images, {paths['train_annotations']} instances; "
          f"val: {paths['val_images']} images, {paths['val_annotations']} instances "
          f"({time.perf_counter() - start:.1f} s)")
    print(f"LDA_EXTRA_DATASETS='{extra_datasets_spec(paths)}'")


# ------------------------------------------------------------------------- /proc readers
def proc_kib(pid, key, file="status"):
    """The ``key:`` figure of /proc/PID/FILE in KiB (``VmRSS``, ``VmHWM`` in status; ``Pss`` in
    smaps_rollup); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """The pids of the child processes of ``pid`` (e.g. data-loader workers)."""
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return kids


# ------------------------------------------------------------------------- startup
class _ParseCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record):
        if record.getMessage().startswith("Parsing "):
            self.count += 1


def startup_row(size, cache, config, workers, batch):
    """The start-up figures of one dataset size (run in a fresh process)."""
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
        cfg = _setup(config, [
            "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('startup_train',)",
            "DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", str(workers),
            "SOLVER.IMS_PER_BATCH", str(batch), "OUTPUT_DIR", tmp])
        logging.getLogger("detectron2").setLevel(logging.WARNING)
        t = time.perf_counter()
        Trainer.build_model(cfg)
        row["model_s"] = time.perf_counter() - t
        t = time.perf_counter()
        loader = Trainer.build_train_loader(cfg)
        row["loader_s"] = time.perf_counter() - t
        row["rss_after_loader"] = proc_kib(me, "VmRSS") / MIB
        row["peak_after_loader"] = proc_kib(me, "VmHWM") / MIB
        t = time.perf_counter()
        freq = frequency_provider(cfg)()
        counts = image_count_provider(cfg)()
        row["class_stats_s"] = time.perf_counter() - t
        if not freq.numel() == counts.numel() == lvis_rehearsal.NUM_CLASSES:
            raise RuntimeError(f"{config}: class statistics of {freq.numel()} classes, not "
                               f"{lvis_rehearsal.NUM_CLASSES}")
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
        row["startup_s"] = (row["model_s"] + row["loader_s"] + row["class_stats_s"]
                            + row["first_batch_s"])
        del it, loader
    return row


def print_startup_table(rows):
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


def startup(args):
    """
    Start-up of an LVIS-scale training run, phase by phase: time and memory of (1) building the
    model of the config (R-50 FPN, 1,203 classes); (2) building the training loader:
    registration, parsing and loading the LVIS-format JSON into detectron2 dicts, filtering,
    repeat factors (t = 0.001) and detectron2's serialisation of the dicts into one buffer;
    (3) the training-set class statistics of the predictors (sampled instance frequencies and
    image counts, which LDA and the peers compute at the first training step); (4) the data
    loader's start with DATALOADER.NUM_WORKERS workers (first batch), with the RSS and PSS of
    each worker (forked workers share the parent's pages; PSS counts them once). Each size is
    generated under --cache and measured in a fresh process; one table, with the peak RSS
    (VmHWM) of the main process and how many times an annotation file was parsed. The numbers
    depend on the machine and its load: compare sizes in one run.
    """
    if args.one:
        row = startup_row(_size(args.one), args.cache, args.config_file, args.workers, args.batch)
        print("STARTUP_ROW " + json.dumps(row), flush=True)
        return
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "startup", "--one", size,
               "--cache", args.cache, "--config-file", args.config_file,
               "--workers", str(args.workers), "--batch", str(args.batch)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("STARTUP_ROW ")]
        if out.returncode or not lines:
            sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
            raise SystemExit(f"measuring size {size} failed (exit code {out.returncode})")
        rows.append(json.loads(lines[-1][len("STARTUP_ROW "):]))
        print_startup_table(rows[-1:])
    print(f"\nAll sizes ({args.workers} workers, batch {args.batch}, "
          f"config {os.path.relpath(args.config_file, REPO_ROOT)}):")
    print_startup_table(rows)


# ------------------------------------------------------------------------- rss
def memory_mib():
    """(main RSS, workers RSS, main + workers PSS), in MiB."""
    me = os.getpid()
    kids = children(me)
    pss = proc_kib(me, "Pss", "smaps_rollup") + sum(proc_kib(k, "Pss", "smaps_rollup")
                                                    for k in kids)
    return (proc_kib(me, "VmRSS") / MIB, sum(proc_kib(k, "VmRSS") for k in kids) / MIB,
            pss / MIB)


class MemoryHook(HookBase):
    """Prints and keeps (iteration, main RSS, workers RSS, PSS) every ``every`` iterations."""

    def __init__(self, every):
        self.every = every
        self.rows = []
        self._t0 = None

    def before_train(self):
        self._t0 = time.perf_counter()

    def after_step(self):
        it = self.trainer.iter + 1  # iterations done
        if it % self.every == 0 or it == self.trainer.max_iter:
            main, workers, pss = memory_mib()
            self.rows.append((it, main, workers, pss))
            print(f"MEM iter {it:5d}  main RSS {main:8.1f} MiB  workers RSS {workers:8.1f} MiB  "
                  f"PSS total {pss:8.1f} MiB  ({time.perf_counter() - self._t0:6.1f} s)",
                  flush=True)


def print_memory_growth(rows):
    if len(rows) < 3:
        return
    its = np.array([r[0] for r in rows], dtype=float)
    print("\nMiB at each measurement:")
    print(f"{'iteration':>10} {'main RSS':>10} {'workers RSS':>12} {'PSS total':>10}")
    for it, main, workers, pss in rows:
        print(f"{it:10d} {main:10.1f} {workers:12.1f} {pss:10.1f}")
    half = len(rows) // 2
    for col, name in ((1, "main RSS"), (2, "workers RSS"), (3, "PSS total")):
        vals = np.array([r[col] for r in rows])
        slope = np.polyfit(its[half:], vals[half:], 1)[0] * 100 if len(rows) - half >= 2 else 0.0
        print(f"{name:>12}: {vals[0]:.1f} -> {vals[-1]:.1f} MiB (iterations {int(its[0])} -> "
              f"{int(its[-1])}: {vals[-1] - vals[0]:+.1f} MiB); max {vals.max():.1f}; slope over "
              f"the second half {slope:+.2f} MiB / 100 iterations")


def rss(args):
    """
    Memory of a long training run (train_net.py's Trainer, no evaluation): every --every
    iterations, the RSS of the training process (VmRSS), the RSS of its data-loader workers,
    and the PSS of the training process and its workers together (/proc/PID/smaps_rollup:
    forked workers share pages with their parent, so adding RSS values counts those pages
    twice). At the end, the growth between the first measurement and the last, and the slope of
    a least-squares line over the second half of the run, in MiB per 100 iterations: memory that
    does not grow gives a slope near 0 once the allocator has warmed up. Trailing arguments are
    config options, as on train_net.py's command line.
    """
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _setup(args.config_file, [
            "SOLVER.MAX_ITER", str(args.iters), "SOLVER.CHECKPOINT_PERIOD", str(10 ** 9),
            "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()", "OUTPUT_DIR", args.output_dir or tmp,
            *args.opts])
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        hook = MemoryHook(args.every)
        trainer.register_hooks([hook])
        print(f"MEM before training: main RSS {memory_mib()[0]:.1f} MiB", flush=True)
        trainer.train()
        print(f"\nconfig {args.config_file}, {args.iters} iterations, batch "
              f"{cfg.SOLVER.IMS_PER_BATCH}, {cfg.DATALOADER.NUM_WORKERS} data-loader worker(s), "
              f"{torch.get_num_threads()} torch thread(s)")
        print_memory_growth(hook.rows)


# ------------------------------------------------------------------------- profile
def profile_step(args):
    """
    Where does a training step spend its time? Profiles a few iterations of a config with
    torch.profiler and prints the operators with the most self CPU (or CUDA) time, plus the
    share of data loading, forward+backward and the optimizer step. Trailing arguments are
    config options.
    """
    cfg = _setup(args.config_file, [*args.opts, "OUTPUT_DIR", tempfile.mkdtemp(prefix="profile_")])
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    data = iter(Trainer.build_train_loader(cfg))
    model.train()
    phases = {"data": 0.0, "forward+backward": 0.0, "optimizer": 0.0}

    def one_step(timed):
        t0 = time.perf_counter()
        batch = next(data)
        t1 = time.perf_counter()
        losses = model(batch)
        sum(losses.values()).backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        t3 = time.perf_counter()
        if timed:
            phases["data"] += t1 - t0
            phases["forward+backward"] += t2 - t1
            phases["optimizer"] += t3 - t2

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with EventStorage(0):
        for _ in range(args.warmup):
            one_step(False)
        with profile(activities=activities) as prof:
            for _ in range(args.iters):
                one_step(True)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.top))
    total = sum(phases.values())
    print(f"{args.iters} profiled iterations, {total / args.iters:.3f} s / iteration "
          "(under the profiler: slower than training)")
    for name, t in phases.items():
        print(f"  {name:18s} {t / args.iters:.3f} s  ({100 * t / total:.0f}%)")


# ------------------------------------------------------------------------- predictor, step
def print_times(title, times, unit="ms", scale=1000.0):
    """Median of each method and phase, and its ratio to the baseline's."""
    base = times.get("baseline")
    base = {k: statistics.median(v) for k, v in base.items()} if base else None
    keys = list(next(iter(times.values())))
    print(f"\n{title}")
    print(f"{'method':>18} " + " ".join(f"{k + ' ' + unit:>14} {'/ baseline':>10}" for k in keys))
    for m, phases in times.items():
        cells = []
        for k in keys:
            med = statistics.median(phases[k])
            ratio = f"{med / base[k]:10.3f}" if base else f"{'-':>10}"
            cells.append(f"{med * scale:14.2f} {ratio}")
        print(f"{m:>18} " + " ".join(cells))


def _methods_and_device(args, default):
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available on this machine")
    methods = args.methods or default
    if "baseline" in methods:  # first: the others' ratios are to it
        methods = ["baseline"] + [m for m in methods if m != "baseline"]
    where = str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
                           else f", {torch.get_num_threads()} threads")
    return methods, device, where + (", AMP" if getattr(args, "amp", False) else "")


def predictor(args):
    """
    The box predictor alone at LVIS v1's shape, the only part that differs between the methods:
    forward + losses + backward on 512 ROIs x --batch images of 1024-d box-head features, and the
    test path (forward + per-class scores) on 1,000 proposals per image; the baseline is
    detectron2's FastRCNNOutputLayers. Methods run interleaved in one process; prints median
    milliseconds per method and the ratio to the baseline of the same run.
    """
    methods, device, where = _methods_and_device(args, list(lvis_rehearsal.METHODS))
    times, nonfinite = lvis_rehearsal.predictor_benchmark(
        methods, args.rounds, args.batch, device,
        warmup=2 if args.warmup is None else args.warmup, amp=args.amp, config_dir=LVIS_CONFIGS)
    print_times(
        f"Box predictor alone, 1,203 classes, 1024-d features, {args.rounds} interleaved rounds "
        f"on {where}: train = forward + losses + backward on 512 x {args.batch} ROIs; test = "
        f"forward + scores on 1000 x {args.batch} proposals (medians)", times)
    print("non-finite losses (rounds):", nonfinite)


def syncs(args):
    """
    What one training step of each method's box predictor at LVIS v1's shape asks of the host:
    host-synchronising ops (scalar reads, boolean-mask indexing, nonzero, unique: each stalls a
    GPU's stream), operators dispatched (each costs microseconds of host time whatever its size)
    and, on a GPU, the kernels launched and their summed device time, under torch.profiler
    (projects_lda/benchmark/host_syncs.py); the baseline is detectron2's FastRCNNOutputLayers.
    ``--top N`` also lists each method's N most-dispatched operators.
    """
    methods, device, where = _methods_and_device(args, list(lvis_rehearsal.METHODS))
    profiles = lvis_rehearsal.predictor_profiles(methods, args.batch, device, top=args.top,
                                                 config_dir=LVIS_CONFIGS)
    print(f"Host synchronisations, operators dispatched and device work per training step of the "
          f"box predictor, 1,203 classes, 512 x {args.batch} ROIs, {where}")
    print(f"{'method':>18} {'syncs':>6} " + " ".join(f"{op:>26}" for op in SYNC_OPS)
          + f" {'ops':>6} {'kernels':>8} {'device ms':>10}")
    for m in methods:
        c = profiles[m]["syncs"]
        print(f"{m:>18} {sum(c.values()):6d} " + " ".join(f"{c[op]:26d}" for op in SYNC_OPS)
              + f" {profiles[m]['ops']:6d} {profiles[m]['kernels']:8d}"
              + f" {profiles[m]['device_ms']:10.2f}")
    for m in methods if args.top else ():
        print(f"{m}: " + ", ".join(f"{name[6:]} {n}" for name, n in profiles[m]["top"]))


def step(args):
    """
    Whole training iterations (data prepared once and shared; SGD step included) and inference
    per test image (300 detections, score threshold 1e-4) of the methods' R-50 FPN 12-epoch
    LVIS v1 configs on an LVIS v1-shaped dataset of --size, interleaved in one process. Random
    weights with calibrated frozen BatchNorm and a learning rate of 1e-5: the losses mean
    nothing, only time and memory do. On CUDA (--device cuda) it also reports peak GPU memory;
    --amp runs the steps under mixed precision (as SOLVER.AMP.ENABLED).
    """
    methods, device, where = _methods_and_device(args, ["baseline", "lda"])
    size = _size(args.size)
    dataset = register_lvis_shaped(os.path.join(args.cache, str(size)), size,
                                   prefix=f"lvis_shaped_{size}")
    times, extra = lvis_rehearsal.step_benchmark(
        methods, args.rounds, args.batch, device, dataset,
        warmup=1 if args.warmup is None else args.warmup, amp=args.amp,
        test_images=args.test_images, min_size=args.min_size, max_size=args.max_size,
        opts=args.opts, config_dir=LVIS_CONFIGS)
    print_times(
        f"{extra['model']}, {args.min_size}-px images, batch {args.batch}, {args.rounds} "
        f"interleaved rounds on {where}: seconds per training iteration and per test image "
        "(score > 1e-4) (medians; random weights, LR 1e-5: losses mean nothing)",
        times, unit="s", scale=1.0)
    for m in methods:
        line = (f"{m:>18}: {1.0 / statistics.median(times[m]['train']):.3f} iterations/s, "
                f"{extra['detections'].get(m)} detections on the last test image, non-finite "
                f"loss in {extra['nonfinite'][m]} iteration(s)")
        if "peak_gib" in extra:
            line += f", peak GPU memory {extra['peak_gib'][m]:.2f} GiB"
        print(line)


# ------------------------------------------------------------------------- configs
def configs(args):
    """
    Runs the configs/LVISv1/ configs for real on an LVIS v1-shaped dataset: a few training
    iterations at 800 px with 1,203 classes (train_net.py's Trainer, its hooks, checkpointer
    and evaluator), then LVIS evaluation on a few validation images with 300 detections per
    image and score threshold 1e-4. Random weights with calibrated frozen BatchNorm and a
    learning rate of 1e-5: the losses and APs mean nothing; what is checked is that every config
    trains, evaluates and returns finite losses and well-formed detections. Prints one line per
    config (seconds for training and evaluation, detections per image, the lowest score kept,
    the losses of the last iteration); exit status 1 when one failed.
    """
    train_name, val_name = register_lvis_shaped(args.data, "tiny", prefix="lvis_shaped_run",
                                                val_size=2, pool_size=4)
    ran, failed = 0, []
    for config in sorted(glob.glob(args.configs)):
        out = tempfile.mkdtemp(prefix="lvis_run_")
        try:
            row = lvis_rehearsal.run_config(config, train_name, val_name, out, iters=args.iters,
                                            batch=args.batch, min_size=args.min_size,
                                            root=str(REPO_ROOT))
        except Exception as e:  # keep going, name the failures at the end
            failed.append((config, repr(e)))
            print(f"FAILED {config}: {e!r}", flush=True)
            continue
        finally:
            shutil.rmtree(out, ignore_errors=True)
        ran += 1
        losses = ", ".join(f"{k}: {v:.3g}" for k, v in row["losses"].items())
        print(f"{row['config']}: {row['head']}, {row['total_s']:.0f} s train+eval, "
              f"detections/image {row['detections_per_image']}, min score {row['min_score']}, "
              f"losses {{{losses}}}", flush=True)
    print(f"\n{ran} config(s) ran, {len(failed)} failed")
    for config, err in failed:
        print(f"  {config}: {err}")
    if failed:
        raise SystemExit(1)


# ------------------------------------------------------------------------- class-ap-spread
def average_precision(scores, is_tp, num_gt):
    """COCO-style 101-point interpolated AP of one class (one IoU threshold)."""
    if num_gt == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # interpolated
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def simulate_class(rng, n, recall, fp_rate):
    """Per image: (scores, is_tp) of its detections."""
    found = rng.random(n) < recall
    has_fp = rng.random(n) < fp_rate
    images = []
    for f, h in zip(found, has_fp):
        s = ([rng.normal(1.0, 1.0)] if f else []) + ([rng.normal(0.0, 1.0)] if h else [])
        images.append((np.array(s), np.array([True] * int(f) + [False] * int(h), dtype=bool)))
    return images


def bootstrap_sd(rng, images, samples):
    aps = []
    for _ in range(samples):
        pick = rng.integers(len(images), size=len(images))
        scores = np.concatenate([images[i][0] for i in pick])
        is_tp = np.concatenate([images[i][1] for i in pick])
        aps.append(average_precision(scores, is_tp, len(pick)))
    return float(np.std(aps))


def class_ap_spread(args):
    """
    How many evaluation instances per class does a class AP need? Bootstrap spread of one
    class's AP at n ground-truth instances for a simulated detector (it sized the embedded
    dataset's val and test splits, docs/datasets.md): n images with one instance each; the
    detector finds an instance with probability --recall, scoring it N(1, 1); each image also
    gets a false positive of the class with probability --fp-rate, scored N(0, 1). AP is COCO's
    101-point interpolated precision; the spread is the standard deviation of the AP over
    bootstrap resamples of the images (as the benchmark's confidence intervals resample
    evaluation images), averaged over simulated datasets.
    """
    rng = np.random.default_rng(args.seed)
    print("| instances per class | class AP (mean) | bootstrap SD of the class AP | one box |")
    print("|---|---|---|---|")
    for n in args.n:
        aps, sds = [], []
        for _ in range(args.datasets):
            images = simulate_class(rng, n, args.recall, args.fp_rate)
            scores = np.concatenate([s for s, _ in images])
            is_tp = np.concatenate([t for _, t in images])
            aps.append(average_precision(scores, is_tp, n))
            sds.append(bootstrap_sd(rng, images, args.bootstrap))
        print(f"| {n} | {100 * np.mean(aps):.1f} | {100 * np.mean(sds):.1f} | {100 / n:.1f} |")


# ------------------------------------------------------------------------- command line
def _add_rehearsal_options(p, default_warmup):
    p.add_argument("--methods", nargs="+", default=None, choices=list(lvis_rehearsal.METHODS))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--warmup", type=int, default=None, help=f"default: {default_warmup}")
    p.add_argument("--batch", type=int, default=2, help="images per process (the LVIS configs: "
                   "8 images over 4 GPUs; detectron2's LVIS recipe: 2 per GPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (float16 on CUDA, bfloat16 on the CPU)")


# ------------------------------------------------------------------------- mask head
def mask_head(args):
    """
    Inference time of the config's mask head (SelectedClassMaskHead: its convolutions, the
    deconvolution and the selected class's logits) on random ROI features, by the number of
    ROIs an image and the ROIs a pass (``--chunks``; 0: all in one pass, the baseline of the
    ratios). Median of ``--repeats`` runs after one warm-up.
    """
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.roi_heads.mask_head import build_mask_head

    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list([*args.opts, "MODEL.ROI_MASK_HEAD.NAME", "SelectedClassMaskHead"])
    size = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
    head = build_mask_head(cfg, ShapeSpec(channels=cfg.MODEL.FPN.OUT_CHANNELS, width=size,
                                          height=size)).eval()
    g = torch.Generator().manual_seed(0)
    print(f"{args.config_file}: {cfg.MODEL.ROI_HEADS.NUM_CLASSES} classes, "
          f"{cfg.MODEL.ROI_MASK_HEAD.CONV_DIM} channels, {size}x{size} ROIs, "
          f"{torch.get_num_threads()} torch thread(s)")
    print(f"{'ROIs':>6} " + " ".join(f"{'chunk ' + str(c) + ' ms':>16} {'/ one pass':>10}"
                                     for c in args.chunks))
    for n in args.rois:
        x = torch.randn(n, cfg.MODEL.FPN.OUT_CHANNELS, size, size, generator=g)
        classes = torch.randint(0, cfg.MODEL.ROI_HEADS.NUM_CLASSES, (n,), generator=g)
        medians = {}
        with torch.no_grad():
            for c in args.chunks:
                head.mask_logits(x, classes, chunk=c)
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    head.mask_logits(x, classes, chunk=c)
                    times.append(time.perf_counter() - t)
                medians[c] = statistics.median(times)
        base = medians.get(0)
        cells = [f"{1000 * t:16.1f} " + (f"{t / base:10.2f}" if base else f"{'-':>10}")
                 for t in medians.values()]
        print(f"{n:>6} " + " ".join(cells))


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(fn, name, text):
        p = sub.add_parser(name, help=text, description=fn.__doc__)
        p.set_defaults(run=fn)
        p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
        return p

    p = command(make_lvis_shaped, "make-lvis-shaped", "write an LVIS v1-shaped dataset")
    p.add_argument("--size", default="10k",
                   help=f"one of {sorted(SIZES)} or a number of training images")
    p.add_argument("--root", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool-size", type=int, default=32, help="distinct training image files")
    p.add_argument("--force", action="store_true", help="write again even if present")

    p = command(startup, "startup", "start-up time and memory at LVIS scale, per dataset size")
    p.add_argument("--sizes", nargs="+", default=["10k", "30k", "100k"])
    p.add_argument("--cache", default=CACHE)
    p.add_argument("--config-file", default=LVIS_LDA)
    p.add_argument("--workers", type=int, default=4, help="DATALOADER.NUM_WORKERS")
    p.add_argument("--batch", type=int, default=2, help="SOLVER.IMS_PER_BATCH (per process)")
    p.add_argument("--one", default="", help=argparse.SUPPRESS)  # a size, in a fresh process

    p = command(configs, "configs", "train and evaluate the configs/LVISv1/ configs briefly")
    p.add_argument("--configs", default=str(REPO_ROOT / "configs/LVISv1/*.yaml"))
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--min-size", type=int, default=800)
    p.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "lvis_shaped_run"))

    p = command(predictor, "predictor", "box predictors at LVIS shape, against the baseline")
    _add_rehearsal_options(p, default_warmup=2)

    p = command(syncs, "syncs", "host synchronisations, operators and kernels of a predictor's "
                "training step")
    p.add_argument("--methods", nargs="+", default=None, choices=list(lvis_rehearsal.METHODS))
    p.add_argument("--batch", type=int, default=2, help="images of 512 sampled ROIs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--top", type=int, default=0, help="list each method's N most-dispatched ops")

    p = command(step, "step", "whole R-50 training and test steps at LVIS shape")
    _add_rehearsal_options(p, default_warmup=1)
    p.add_argument("--size", default="1k", help="LVIS v1-shaped dataset size")
    p.add_argument("--cache", default=CACHE)
    p.add_argument("--min-size", type=int, default=800, help="image short side")
    p.add_argument("--max-size", type=int, default=1333)
    p.add_argument("--test-images", type=int, default=2)
    p.add_argument("--opts", nargs="+", default=[], help="config options: KEY VALUE ...")

    p = command(rss, "rss", "resident memory of a long training run")
    p.add_argument("--config-file", default=EMBEDDED_LDA)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--output-dir", default="", help="default: a temporary folder")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config options (KEY VALUE ...)")

    p = command(profile_step, "profile", "operators and phases of a few training steps")
    p.add_argument("--config-file", required=True)
    p.add_argument("--iters", type=int, default=5, help="profiled iterations")
    p.add_argument("--warmup", type=int, default=3, help="iterations before profiling")
    p.add_argument("--top", type=int, default=20, help="operators to print")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config options (KEY VALUE ...)")

    p = command(class_ap_spread, "class-ap-spread", "bootstrap spread of a class AP by instances")
    p.add_argument("--n", type=int, nargs="+", default=[5, 14, 40, 60])
    p.add_argument("--recall", type=float, default=0.7)
    p.add_argument("--fp-rate", type=float, default=1.0)
    p.add_argument("--datasets", type=int, default=50)
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)

    p = command(mask_head, "mask-head", "CPU inference time of the mask head by ROIs a pass")
    p.add_argument("--config-file", default=str(
        REPO_ROOT / "configs/Icons1203/mask_rcnn_R_18_FPN_cpu_icons1203.yaml"))
    p.add_argument("--rois", type=int, nargs="+", default=[100, 300, 800], help="ROIs an image")
    p.add_argument("--chunks", type=int, nargs="+", default=[0, 8, 16, 32, 64, 128],
                   help="ROIs a pass (0: one pass)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config options (KEY VALUE ...)")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.run(args)


if __name__ == "__main__":
    main()
