"""
Drawings of the same images by several models side by side (``tools/side_by_side.py``): one row
an image, one column a model, the models' names on top, and optionally a first column with the
images' annotations drawn from their registered dataset.
"""
import os

import cv2
import numpy as np

__all__ = ["ground_truth_drawings", "side_by_side"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def ground_truth_drawings(dataset, names):
    """
    {name: BGR drawing} of the annotations of the images of the registered ``dataset`` whose
    file names are ``names`` (what ``tools/demo.py --dataset`` calls its drawings), drawn at the
    size of its drawings. A federated dataset's drawing holds only the labelled objects.
    ``ValueError`` names a dataset that is not registered or a name none of its images has.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.detection_utils import read_image

    from .demo import draw_annotations

    if dataset not in DatasetCatalog.list():
        raise ValueError(f"--ground-truth {dataset}: no such registered dataset")
    records = {}
    for r in DatasetCatalog.get(dataset):
        records.setdefault(os.path.basename(r["file_name"]), r)
    metadata = MetadataCatalog.get(dataset)
    drawings = {}
    for name in names:
        if name not in records:
            raise ValueError(f"--ground-truth {dataset}: no image of it is named {name}")
        image = read_image(records[name]["file_name"], format="RGB")
        drawings[name] = np.ascontiguousarray(
            draw_annotations(image, records[name], metadata)[:, :, ::-1])
    return drawings


def side_by_side(folders, labels, footer="", max_rows=None, gap=8, ground_truth=None):
    """The grid as a BGR array: rows are the file names common to ``folders`` (sorted; an error
    names a file one folder lacks), columns the folders, with ``labels`` on top. With
    ``ground_truth`` (a registered dataset) the first column, "ground truth", draws each image's
    annotations (:func:`ground_truth_drawings`)."""
    if len(labels) != len(folders):
        raise ValueError(f"{len(labels)} labels for {len(folders)} folders")
    names = [sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTENSIONS))
             for d in folders]
    for d, n in zip(folders[1:], names[1:]):
        missing = sorted(set(names[0]) ^ set(n))
        if missing:
            raise ValueError(f"{folders[0]} and {d} hold different drawings, e.g. {missing[0]}")
    if not names[0]:
        raise ValueError(f"no image in {folders[0]}")
    names = names[0][:max_rows]
    truth = ground_truth_drawings(ground_truth, names) if ground_truth else None
    if truth:
        labels = ["ground truth", *labels]
    rows = []
    for name in names:
        cells = [truth[name]] if truth else []
        for d in folders:
            img = cv2.imread(os.path.join(d, name))
            if img is None:
                raise ValueError(f"cannot read {os.path.join(d, name)}")
            cells.append(img)
        h = max(c.shape[0] for c in cells)
        cells = [cv2.copyMakeBorder(c, 0, h - c.shape[0], 0, gap, cv2.BORDER_CONSTANT,
                                    value=(255, 255, 255)) for c in cells]
        rows.append(np.hstack(cells))
    width = max(r.shape[1] for r in rows)
    rows = [cv2.copyMakeBorder(r, 0, gap, 0, width - r.shape[1], cv2.BORDER_CONSTANT,
                               value=(255, 255, 255)) for r in rows]
    col = width // len(labels)
    header = np.full((40, width, 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * col + 10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0),
                    2, cv2.LINE_AA)
    parts = [header, *rows]
    if footer:
        foot = np.full((28, width, 3), 255, np.uint8)
        cv2.putText(foot, footer, (10, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 60, 60), 1,
                    cv2.LINE_AA)
        parts.append(foot)
    return np.vstack(parts)
