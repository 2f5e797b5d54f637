"""
``train_net.py``'s ``main``: a run trained (or evaluated) by the project's trainer
(:mod:`projects_lda.engine.defaults`), then a few test images drawn with its predictions by the
demo's function (:func:`projects_lda.deploy.commands.demo`).

Reliability (docs/reliability.md): a resumed run continues exactly as an uninterrupted one;
checkpoints are loaded with torch.load(weights_only=True) and written atomically; unreadable
training images are skipped with a warning; a non-finite loss stops the run naming the iteration
and the loss term.
"""
import logging
import os
from typing import List

import detectron2.utils.comm as comm
from detectron2.evaluation import verify_results

from ..deploy.commands import demo
from ..engine.checkpoint import SafeCheckpointer
from ..engine.defaults import Trainer, setup

__all__ = ["main", "draw_test_predictions"]

logger = logging.getLogger("projects_lda")


def main(args):
    """
    Trains (or, with ``args.eval_only``, evaluates) the run of ``args`` and returns the
    evaluation results; then draws a few test images with predictions into OUTPUT_DIR/vis/.
    """
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SafeCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        draw_test_predictions(cfg)
        return res

    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    # DefaultTrainer evaluates at the end of training and keeps the results here
    res = getattr(trainer, "_last_eval_results", None)
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    if os.path.isfile(final):
        draw_test_predictions(_with_weights(cfg, final))
    return res


def _with_weights(cfg, weights):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return cfg


def draw_test_predictions(cfg, num_images: int = 4, score_thresh: float = 0.3) -> List[str]:
    """Draws the first ``num_images`` images of the first test set with the predictions (score
    at least ``score_thresh``) of the model of ``cfg`` into OUTPUT_DIR/vis/ (main process only);
    returns the paths written."""
    if not cfg.DATASETS.TEST or not comm.is_main_process():
        return []
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    try:
        summary = demo(cfg, dataset=cfg.DATASETS.TEST[0], num_images=num_images,
                       output=os.path.join(cfg.OUTPUT_DIR, "vis"), progress=False)
    except ValueError as e:  # weights that do not fit the model: the evaluation has said it
        logger.warning("Predictions not drawn: %s", e)
        return []
    logger.info("Predictions drawn: %s", ", ".join(summary.written))
    return list(summary.written)
