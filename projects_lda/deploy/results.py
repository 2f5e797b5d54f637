"""
Predictions as a COCO / LVIS results file: a JSON list of ``{"image_id", "category_id",
"bbox" (x, y, w, h), "score", "segmentation" (RLE, ``counts`` a str)}``, which
``pycocotools.COCO.loadRes`` and ``lvis.LVISResults`` read. The conversion is detectron2's
``instances_to_coco_json``; the category ids are the training file's own (see
:class:`~projects_lda.data.class_names.ClassNames`).
"""
import json
import os
from typing import Dict, List, Sequence

from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from ..data.class_names import ClassNames
from ..engine.checkpoint import atomic_write

__all__ = ["instances_to_results", "image_ids_for_files", "write_results"]


def instances_to_results(
    instances, image_id: int, class_names: ClassNames, file_name: str = None
) -> List[Dict]:
    """
    The results-file entries of one image's ``Instances`` (on the CPU, in the image's
    coordinates), with the dataset's category ids; ``file_name``, when given, is added to each
    entry (the COCO and LVIS readers ignore other keys).
    """
    results = instances_to_coco_json(instances, int(image_id))
    for r in results:
        r["category_id"] = class_names.category_id(r["category_id"])
        if file_name is not None:
            r["file_name"] = file_name
    return results


def image_ids_for_files(files: Sequence[str]) -> List[int]:
    """
    The ``image_id`` of each input file: the number its name is made of when every name is a
    distinct number (COCO and LVIS name their images ``000000000139.jpg``: the results then match
    their annotation files), else the 1-based position in ``files``.
    """
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(files) + 1))


def write_results(path: str, results: List[Dict]) -> None:
    """Writes the results list to ``path`` atomically (a complete file or the previous one)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    atomic_write(path, lambda f: json.dump(results, f), mode="w")
