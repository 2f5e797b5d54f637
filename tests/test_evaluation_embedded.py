"""
Parity on real predictions: a detector trained briefly on the embedded dataset (the tiny version
of the test fixtures) predicts its validation images once, and both evaluators, hotcoco's and
detectron2's LVISEvaluator (lvis-api), read the same outputs; bbox and segm.
"""
import pytest
import torch
from conftest import BASELINE_CONFIG

from detectron2.evaluation import LVISEvaluator

from projects_lda.evaluation import LVIS_METRICS, HotcocoLVISEvaluator

import train_net  # noqa: E402  (the repository root is put on sys.path by conftest.py)

TRAIN_ITERS = 40


@pytest.mark.timeout(600)
def test_real_predictions_parity(train_args, tmp_path):
    args = train_args(tmp_path, "SOLVER.MAX_ITER", str(TRAIN_ITERS),
                      "SOLVER.CHECKPOINT_PERIOD", "100000", "DATASETS.TEST", "()",
                      "TEST.DETECTIONS_PER_IMAGE", "300", config=BASELINE_CONFIG)
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.train()
    model = trainer.model.eval()
    loader = train_net.Trainer.build_test_loader(cfg, "tiny_embedded_val")
    ours = HotcocoLVISEvaluator("tiny_embedded_val", max_dets_per_image=300)
    ref = LVISEvaluator("tiny_embedded_val", max_dets_per_image=300)
    ours.reset()
    ref.reset()
    with torch.no_grad():  # one pass of the model; both evaluators read the same outputs
        for inputs in loader:
            outputs = model(inputs)
            ours.process(inputs, outputs)
            ref.process(inputs, outputs)
    ours, ref = ours.evaluate(), ref.evaluate()
    for task in ("bbox", "segm"):
        for k in LVIS_METRICS:
            assert ours[task][k] == pytest.approx(ref[task][k], abs=1e-4), (task, k)  # percent
        assert ours[task]["AP50"] > 1.0, ours  # a trained detector, not noise
