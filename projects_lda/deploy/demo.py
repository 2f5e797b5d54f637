"""
The demo (``tools/demo.py``), the project's one way to draw predictions: a trained model run on
image files, folders and globs, a registered dataset's images, a video or a webcam; drawings with
detectron2's ``Visualizer`` / ``VideoVisualizer`` and the predictions as a COCO / LVIS results
file. A progress bar shows images (frames) per second.
"""
import glob
import logging
import os
import time
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
import tqdm

from detectron2.data.detection_utils import read_image
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from .results import image_ids_for_files, instances_to_results, write_results

__all__ = [
    "IMAGE_EXTENSIONS",
    "DemoSummary",
    "draw_annotations",
    "draw_predictions",
    "expand_inputs",
    "image_ids_from_annotations",
    "image_output_paths",
    "open_video",
    "run_on_images",
    "run_on_video",
    "video_writer",
]

logger = logging.getLogger(__name__)

#: What a folder given to ``--input`` is searched for (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Video codecs by output extension (those OpenCV's pip wheels write).
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class DemoSummary(NamedTuple):
    """What a demo run did."""

    images: int  # images or frames predicted
    detections: int  # detections in them (above the confidence threshold)
    seconds: float  # wall time of the loop (reading, predicting, drawing, writing)
    written: Tuple[str, ...]  # drawings (or the video) written
    skipped: Tuple[Tuple[str, str], ...]  # (file, reason) of the images that could not be read


def expand_inputs(patterns: Sequence[str]) -> List[str]:
    """
    The image files of ``--input``: each entry is a file, a folder (its images, by
    :data:`IMAGE_EXTENSIONS`, not recursive, sorted) or a glob pattern (sorted matches). Raises
    ``FileNotFoundError`` naming an entry that matches no image.
    """
    files = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = sorted(
                os.path.join(pattern, f) for f in os.listdir(pattern)
                if f.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(pattern, f))
            )
            what = f"folder {pattern} holds no image ({', '.join(IMAGE_EXTENSIONS)})"
        elif glob.has_magic(pattern):
            found = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
            what = f"pattern {pattern} matches no file"
        else:
            found = [pattern] if os.path.isfile(pattern) else []
            what = f"no such file or folder: {pattern}"
        if not found:
            raise FileNotFoundError(f"--input: {what}")
        files.extend(found)
    return files


def image_output_paths(files: Sequence[str], output: str) -> List[str]:
    """
    Where the drawing of each input goes, as in detectron2's demo: ``output`` is a file when it
    is not an existing folder and there is one input with an image extension, else a folder
    that receives each input's file name. Raises ``ValueError`` when two inputs share a name.
    """
    if len(files) == 1 and not os.path.isdir(output) and output.lower().endswith(IMAGE_EXTENSIONS):
        return [output]
    names = [os.path.basename(f) for f in files]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ValueError(
            f"--output {output}: several inputs are named {', '.join(clash[:5])}; their drawings "
            "would overwrite each other (give the folders separately)"
        )
    return [os.path.join(output, n) for n in names]


def _progress(total: Optional[int], unit: str, enabled: bool):
    return tqdm.tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True)


def image_ids_from_annotations(files: Sequence[str], annotation_file: str) -> List[int]:
    """
    The ``image_id`` of each input file in a COCO- or LVIS-format annotation file, matched by
    file name: the image whose ``file_name`` (else the last part of its ``coco_url``) is the
    end of the file's path, so that a results file scores against that annotation file
    whatever the images are called. Raises ``ValueError`` naming the first file the annotation
    file does not list, or lists twice.
    """
    import json

    with open(annotation_file) as f:
        images = json.load(f).get("images", [])
    by_name = {}
    for img in images:
        name = img.get("file_name") or str(img.get("coco_url", "")).split("/")[-1]
        by_name.setdefault(os.path.basename(name), []).append((name, img["id"]))
    ids = []
    for path in files:
        norm = path.replace(os.sep, "/")
        found = [(n, i) for n, i in by_name.get(os.path.basename(path), [])
                 if norm == n or norm.endswith("/" + n.lstrip("/"))]
        if len(found) != 1:
            what = "does not list" if not found else f"lists {len(found)} times"
            raise ValueError(f"--annotations: {annotation_file} {what} the image {path} (images "
                             "are matched by their file_name)")
        ids.append(found[0][1])
    return ids


def run_on_images(
    predictor: Callable,
    files: Sequence[str],
    *,
    class_names,
    metadata,
    output: Optional[str] = None,
    json_file: Optional[str] = None,
    progress: bool = True,
    annotations: Optional[str] = None,
) -> DemoSummary:
    """
    Predicts each image file with ``predictor`` (a BGR image in, ``{"instances": ...}`` out),
    writes its drawing under ``output`` (:func:`image_output_paths`; none when None) and, with
    ``json_file``, all predictions as a results file (:mod:`.results`). Image ids: those of the
    annotation file ``annotations``, matched by file name (:func:`image_ids_from_annotations`),
    else :func:`~projects_lda.deploy.results.image_ids_for_files`'. An image that cannot be read
    is skipped with a warning naming it. The results file is written even when the loop stops
    on an error, with the images done.
    """
    image_ids = image_ids_from_annotations(files, annotations) if annotations else \
        image_ids_for_files(files)
    outputs = image_output_paths(files, output) if output else [None] * len(files)
    for folder in {os.path.dirname(os.path.abspath(o)) for o in outputs if o}:
        os.makedirs(folder, exist_ok=True)
    results, written, skipped, detections = [], [], [], 0
    bar = _progress(len(files), "img", progress)
    start = time.perf_counter()
    try:
        for path, out, image_id in zip(files, outputs, image_ids):
            try:
                image = read_image(path, format="BGR")
            except (OSError, ValueError, SyntaxError) as e:  # PIL's errors on a corrupt file
                logger.warning("Skipped %s: cannot read it as an image (%s)", path, e)
                skipped.append((path, str(e)))
                bar.update(1)
                continue
            instances = predictor(image)["instances"].to("cpu")
            detections += len(instances)
            if json_file:
                results.extend(instances_to_results(instances, image_id, class_names, path))
            if out:
                drawn = draw_predictions(image[:, :, ::-1], instances, metadata, score_thresh=0.0)
                if not cv2.imwrite(out, drawn[:, :, ::-1]):
                    raise OSError(f"--output: cannot write {out}")
                written.append(out)
            bar.update(1)
    finally:
        seconds = time.perf_counter() - start
        bar.close()
        if json_file:
            write_results(json_file, results)
    return DemoSummary(len(files) - len(skipped), detections, seconds, tuple(written),
                       tuple(skipped))


def video_writer(path: str, fps: float, size: Tuple[int, int]) -> cv2.VideoWriter:
    """An OpenCV writer of ``path`` (codec by its extension, :data:`VIDEO_CODECS`); raises
    ``ValueError`` naming the file when it cannot be written."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_CODECS:
        raise ValueError(
            f"--output {path}: a video is written as {', '.join(VIDEO_CODECS)}, not '{ext}'"
        )
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*VIDEO_CODECS[ext]), fps, size, True)
    if not writer.isOpened():
        raise ValueError(f"--output {path}: OpenCV cannot write this video file")
    return writer


def _frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def run_on_video(
    predictor: Callable,
    capture: cv2.VideoCapture,
    *,
    class_names,
    metadata,
    output: Optional[str] = None,
    json_file: Optional[str] = None,
    show: Optional[Callable[[np.ndarray], bool]] = None,
    progress: bool = True,
) -> DemoSummary:
    """
    Predicts each frame of an opened ``capture`` (a video file or a webcam), draws it with
    detectron2's ``VideoVisualizer`` (colours that follow the objects) into the video file
    ``output`` (same size and frame rate) and/or passes the drawing (BGR) to ``show``, which
    returns False to stop. With ``json_file``, the predictions as a results file whose
    ``image_id`` is the frame's index (from 0), written even when the loop stops on an error.
    """
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = video_writer(output, fps, (width, height)) if output else None
    visualizer = VideoVisualizer(metadata, ColorMode.IMAGE)
    results, frames, detections = [], 0, 0
    bar = _progress(total if total > 0 else None, "frame", progress)
    start = time.perf_counter()
    try:
        for index, frame in enumerate(_frames(capture)):
            instances = predictor(frame)["instances"].to("cpu")
            detections += len(instances)
            frames += 1
            if json_file:
                results.extend(instances_to_results(instances, index, class_names))
            if writer is not None or show is not None:
                drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], instances)
                drawn = drawn.get_image()[:, :, ::-1]
                if writer is not None:
                    writer.write(np.ascontiguousarray(drawn))
                if show is not None and not show(drawn):
                    break
            bar.update(1)
    finally:
        seconds = time.perf_counter() - start
        bar.close()
        if writer is not None:
            writer.release()
        if json_file:
            write_results(json_file, results)
    return DemoSummary(frames, detections, seconds, (output,) if output else (), ())


def open_video(path: str) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` of ``path``; raises ``FileNotFoundError`` /
    ``ValueError`` naming the file when it is missing or not a video OpenCV reads."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--video-input: no such file: {path}")
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"--video-input: OpenCV cannot read {path} as a video")
    return capture


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
    vis = _visualizer(image_rgb, metadata, min_side)
    return vis.draw_instance_predictions(instances).get_image()


def _visualizer(image_rgb, metadata, min_side):
    """A ``Visualizer`` that enlarges small images so that their longer side has at least
    ``min_side`` pixels (labels keep a readable size)."""
    scale = max(1.0, min_side / max(image_rgb.shape[:2]))
    return Visualizer(image_rgb, metadata, scale=scale, instance_mode=ColorMode.IMAGE)


def draw_annotations(image_rgb, record, metadata, min_side: int = 512):
    """
    A dataset record's annotations (detectron2's dataset dict: contiguous ``category_id``,
    boxes, masks) drawn as :func:`draw_predictions` draws predictions, at the same size, so
    that the ground truth can stand beside a model's drawing of the same image.
    """
    return _visualizer(image_rgb, metadata, min_side).draw_dataset_dict(record).get_image()
