"""Unreadable images fail with an error that names the file."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from projects_lda import get_project_cfg
from projects_lda.data.mapper import ImageReadError, SafeDatasetMapper

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mapper():
    cfg = get_project_cfg()  # the configs use keys of add_training_config too
    cfg.merge_from_file(str(ROOT / "configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml"))
    return SafeDatasetMapper(cfg, is_train=True)


def _record(path):
    return {"file_name": str(path), "height": 32, "width": 32, "image_id": 1, "annotations": []}


@pytest.mark.parametrize(
    "content", [b"not an image at all", None], ids=["corrupt", "missing"]
)
def test_unreadable_image_names_the_file(mapper, tmp_path, content):
    path = tmp_path / "broken.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=r"cannot read image .*broken\.png"):
        mapper(_record(path))


def test_truncated_png_names_the_file(mapper, tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.RandomState(0).randint(0, 255, (32, 32, 3), np.uint8))
    data = good.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    out = mapper(_record(good))
    assert tuple(out["image"].shape[0:1]) == (3,)
    with pytest.raises(ImageReadError, match=r"truncated\.png"):
        mapper(_record(bad))
