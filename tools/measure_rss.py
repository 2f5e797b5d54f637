#!/usr/bin/env python
"""
Memory of a long LDA training run: resident memory measured every N iterations.

Trains with train_net.py's Trainer (no evaluation), and every ``--every`` iterations prints:

* the RSS of the training process (``VmRSS`` in /proc/self/status);
* the RSS of its data-loader worker processes;
* the PSS of the training process and its workers together (``/proc/PID/smaps_rollup``):
  forked workers share pages with their parent, so adding RSS values counts those pages twice.

At the end it prints the growth between the first measurement after warm-up and the last, and
the slope of a least-squares line over the second half of the run, in MiB per 100 iterations.
Memory that does not grow gives a slope near 0 once the allocator has warmed up.

    python tools/measure_rss.py                       # embedded LDA config, 300 iterations
    python tools/measure_rss.py --iters 300 --every 25 SOLVER.IMS_PER_BATCH 4
    python tools/measure_rss.py --config-file configs/Embedded/mask_rcnn_R_18_FPN_cpu_embedded.yaml

Extra arguments are config options, as on train_net.py's command line. Linux only (/proc).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from detectron2.engine import HookBase  # noqa: E402

import train_net  # noqa: E402

MIB = 1024.0 * 1024.0


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


def memory_mib():
    """(main RSS, workers RSS, main + workers PSS), in MiB."""
    me = os.getpid()
    kids = children(me)
    main_rss = proc_kib(me, "VmRSS") / 1024.0
    workers_rss = sum(proc_kib(k, "VmRSS") for k in kids) / 1024.0
    pss = (proc_kib(me, "Pss", "smaps_rollup") + sum(proc_kib(k, "Pss", "smaps_rollup") for k in kids)) / 1024.0
    return main_rss, workers_rss, pss


class MemoryHook(HookBase):
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
            elapsed = time.perf_counter() - self._t0
            self.rows.append((it, main, workers, pss))
            print(
                f"MEM iter {it:5d}  main RSS {main:8.1f} MiB  workers RSS {workers:8.1f} MiB  "
                f"PSS total {pss:8.1f} MiB  ({elapsed:6.1f} s)",
                flush=True,
            )


def summarize(rows):
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
        growth = vals[-1] - vals[0]
        slope = np.polyfit(its[half:], vals[half:], 1)[0] * 100 if len(rows) - half >= 2 else 0.0
        print(
            f"{name:>12}: {vals[0]:.1f} -> {vals[-1]:.1f} MiB (iterations {int(its[0])} -> "
            f"{int(its[-1])}: {growth:+.1f} MiB); max {vals.max():.1f}; slope over the second "
            f"half {slope:+.2f} MiB / 100 iterations"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file",
        default=os.path.join(ROOT, "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"),
    )
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output-dir", default="", help="default: a temporary folder")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config options (KEY VALUE ...)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.output_dir or tmp
        opts = [
            "SOLVER.MAX_ITER", str(args.iters),
            "SOLVER.CHECKPOINT_PERIOD", str(10 ** 9),
            "TEST.EVAL_PERIOD", "0",
            "DATASETS.TEST", "()",
            "OUTPUT_DIR", out,
            *args.opts,
        ]
        ns = argparse.Namespace(
            config_file=args.config_file, eval_only=False, resume=False, num_gpus=1, opts=opts
        )
        cfg = train_net.setup(ns)
        trainer = train_net.Trainer(cfg)
        trainer.resume_or_load(resume=False)
        hook = MemoryHook(args.every)
        trainer.register_hooks([hook])
        main_rss, _, _ = memory_mib()
        print(f"MEM before training: main RSS {main_rss:.1f} MiB", flush=True)
        trainer.train()
        print(
            f"\nconfig {args.config_file}, {args.iters} iterations, batch "
            f"{cfg.SOLVER.IMS_PER_BATCH}, {cfg.DATALOADER.NUM_WORKERS} data-loader worker(s), "
            f"{torch.get_num_threads()} torch thread(s)"
        )
        summarize(hook.rows)


if __name__ == "__main__":
    main()
