#!/usr/bin/env python
"""
Train and evaluate Mask R-CNN (baseline) or LDA on LVIS-format datasets.

    python train_net.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml
    python train_net.py --config-file configs/LVISv1/lda_mask_rcnn_R_50_FPN_12ep_lvisv1.yaml \
        --num-gpus 8
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS output/model_final.pth
    python train_net.py --config-file CONFIG --resume   # continue from OUTPUT_DIR/last_checkpoint

Runs on the CPU when CUDA is not available; ``--num-gpus N`` then starts N CPU processes (gloo).
After training (and with --eval-only) a few validation images with their predictions are drawn
into OUTPUT_DIR/vis/.

The trainer and the setup of a run live in projects_lda/engine/defaults.py (the tools use them
too), main in projects_lda/app/train.py; reliability: docs/reliability.md.
"""
from detectron2.engine import default_argument_parser

from projects_lda.app.train import main
from projects_lda.engine import launch
from projects_lda.engine.defaults import Trainer, setup

__all__ = ["Trainer", "main", "setup"]


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
