#!/usr/bin/env python
"""
Where does a training step spend its time? Profiles a few iterations of a config with
torch.profiler and prints the operators with the most self CPU (or CUDA) time, plus the share
of data loading, forward+backward and the optimizer step.

    python tools/profile_step.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml
    python tools/profile_step.py --config-file CONFIG --iters 5 --warmup 3 SOLVER.IMS_PER_BATCH 4
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train_net  # noqa: E402

from detectron2.utils.events import EventStorage  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--iters", type=int, default=5, help="profiled iterations")
    parser.add_argument("--warmup", type=int, default=3, help="iterations before profiling")
    parser.add_argument("--top", type=int, default=20, help="operators to print")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    out = tempfile.mkdtemp(prefix="profile_step_")
    cfg = train_net.setup(argparse.Namespace(
        config_file=args.config_file, opts=args.opts + ["OUTPUT_DIR", out],
        eval_only=False, resume=False,
    ))
    model = train_net.Trainer.build_model(cfg)
    optimizer = train_net.Trainer.build_optimizer(cfg, model)
    data = iter(train_net.Trainer.build_train_loader(cfg))
    model.train()
    phases = {"data": 0.0, "forward+backward": 0.0, "optimizer": 0.0}

    def step(timed):
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

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with EventStorage(0):
        for _ in range(args.warmup):
            step(False)
        with profile(activities=activities) as prof:
            for _ in range(args.iters):
                step(True)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.top))
    total = sum(phases.values())
    print(f"{args.iters} profiled iterations, {total / args.iters:.3f} s / iteration "
          "(under the profiler: slower than training)")
    for name, t in phases.items():
        print(f"  {name:18s} {t / args.iters:.3f} s  ({100 * t / total:.0f}%)")


if __name__ == "__main__":
    main()
