#!/usr/bin/env python
"""
LDA's box predictor alone, trained for a few hundred SGD steps on a fixed synthetic long-tailed
stream: every step's losses and alpha, written to JSON; with ``--compare``, the largest relative
difference of each against another such file.

A refactoring of the predictor is meant to keep its arithmetic; a whole detector trained from
scratch cannot show that (600 iterations amplify any floating-point difference into AP points),
this can. It uses only the predictor's public interface (``forward`` and ``losses``), so the
same script runs against another commit's package:

    git worktree add /tmp/old OLD_COMMIT
    PYTHONPATH=/tmp/old python tools/predictor_trajectory.py --out old.json
    python tools/predictor_trajectory.py --out new.json --compare old.json
"""
import argparse
import json

import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import projects_lda  # the checkout imported (another commit's under PYTHONPATH) is printed
from projects_lda.modeling.lda_fast_rcnn import LDAFastRCNNOutputLayers


def trajectory(steps, num_classes, dim, rois, window, lr):
    """[{loss name: value, "alpha": value}] for each step."""
    torch.manual_seed(0)
    C = num_classes
    freq = torch.tensor([float(max(1, int(200 * 0.8**k))) for k in range(C)])  # long tail
    pred = LDAFastRCNNOutputLayers(
        ShapeSpec(channels=dim), box2box_transform=Box2BoxTransform((10.0, 10.0, 5.0, 5.0)),
        num_classes=C, class_freq=freq, window=window,
    )
    pred.train()
    opt = torch.optim.SGD(pred.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    prototypes = torch.randn(C, dim, generator=g)
    out = []
    with EventStorage() as storage:
        for _ in range(steps):
            labels = torch.multinomial(freq, rois, replacement=True, generator=g)
            x = prototypes[labels] + 1.5 * torch.randn(rois, dim, generator=g)
            bg = torch.rand(rois, generator=g) < 0.75  # detectron2's 25% foreground
            x[bg] = torch.randn(int(bg.sum()), dim, generator=g)
            labels[bg] = C
            xy = torch.rand(rois, 2, generator=g) * 50
            wh = 5 + torch.rand(rois, 2, generator=g) * 30
            proposals = Instances((100, 100))
            proposals.proposal_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
            shift = torch.randn(rois, 2, generator=g)
            proposals.gt_boxes = Boxes(torch.cat([xy + shift, xy + shift + wh], dim=1))
            proposals.gt_classes = labels
            losses = pred.losses(pred(x), [proposals])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            storage.step()
            out.append({k: v.item() for k, v in losses.items()})
            out[-1]["alpha"] = float(pred.current_alpha())
    return out


def max_relative_differences(a, b):
    """{key: largest |a - b| / |a| over the steps (the files hold as many)}."""
    keys = sorted(set(a[0]) & set(b[0]))
    return {k: max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-12) for x, y in zip(a, b)) for k in keys}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file the trajectory is written to")
    p.add_argument("--compare", help="another trajectory (JSON) to compare with")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--num-classes", type=int, default=30)
    p.add_argument("--dim", type=int, default=64, help="box feature size")
    p.add_argument("--rois", type=int, default=256, help="sampled proposals per step")
    p.add_argument("--window", type=int, default=20, help="MODEL.LDA.WINDOW")
    p.add_argument("--lr", type=float, default=0.2)
    args = p.parse_args(argv)
    other = None
    if args.compare:  # read first: a wrong file is told before the training
        with open(args.compare) as f:
            other = json.load(f)
        if len(other) != args.steps:
            raise SystemExit(f"--compare: {args.compare} has {len(other)} steps, this run "
                             f"{args.steps}; run both with the same --steps")
    out = trajectory(args.steps, args.num_classes, args.dim, args.rois, args.window, args.lr)
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"{args.steps} steps of {projects_lda.__file__}'s predictor written to {args.out}")
    if other is not None:
        for k, v in max_relative_differences(other, out).items():
            print(f"{k:>22}: largest relative difference {v:.2e}")


if __name__ == "__main__":
    main()
