"""Draw predictions with detectron2's ``Visualizer`` (class names, scores, masks)."""
import logging
import os
from typing import Iterable, List, Optional

import cv2

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import ColorMode, Visualizer

from .deploy.predictor import Predictor

__all__ = ["draw_predictions", "visualize_files", "draw_validation_predictions"]

logger = logging.getLogger("projects_lda")


def draw_predictions(
    image_rgb, instances, metadata, score_thresh: float = 0.3, min_side: int = 512
):
    """
    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        instances: detectron2 ``Instances`` on the CPU (``pred_boxes``, ``scores``,
            ``pred_classes`` and optionally ``pred_masks``).
        metadata: the dataset's metadata (``thing_classes``).
        score_thresh: detections below this score are not drawn.
        min_side: small images are drawn enlarged so that their longer side has at least this
            many pixels (labels keep a readable size).
    Returns:
        uint8 RGB image with boxes, "class score%" labels and masks.
    """
    instances = instances[instances.scores >= score_thresh]
    scale = max(1.0, min_side / max(image_rgb.shape[:2]))
    vis = Visualizer(image_rgb, metadata, scale=scale, instance_mode=ColorMode.IMAGE)
    return vis.draw_instance_predictions(instances).get_image()


def visualize_files(
    cfg, files: Iterable[str], output_dir: str, metadata_name: Optional[str] = None,
    score_thresh: float = 0.3,
) -> List[str]:
    """
    Runs the model of ``cfg`` (weights ``cfg.MODEL.WEIGHTS``) on image files and writes one PNG
    per image into ``output_dir``; returns the paths written. The class names are those of the
    dataset ``metadata_name``, or when None the model's (:class:`projects_lda.deploy.Predictor`:
    from the checkpoint, else from the config's datasets).
    """
    predictor = Predictor(cfg)
    metadata = MetadataCatalog.get(metadata_name) if metadata_name else predictor.metadata
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for path in files:
        image_bgr = read_image(path, format="BGR")
        instances = predictor(image_bgr)["instances"].to("cpu")
        drawn = draw_predictions(image_bgr[:, :, ::-1], instances, metadata, score_thresh)
        out = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        cv2.imwrite(out, drawn[:, :, ::-1])
        written.append(out)
    return written


def draw_validation_predictions(cfg, num_images: int = 4) -> List[str]:
    """Writes the first ``num_images`` images of the first test set with the predictions of the
    model of ``cfg`` into OUTPUT_DIR/vis/ (main process only); returns the paths written."""
    if not cfg.DATASETS.TEST or not comm.is_main_process():
        return []
    name = cfg.DATASETS.TEST[0]
    files = [d["file_name"] for d in DatasetCatalog.get(name)[:num_images]]
    try:
        written = visualize_files(cfg, files, os.path.join(cfg.OUTPUT_DIR, "vis"), name)
    except ValueError as e:  # weights that do not fit the model: the evaluation has said it
        logger.warning("Predictions not drawn: %s", e)
        return []
    logger.info("Predictions drawn: %s", ", ".join(written))
    return written
