"""projects_lda/deploy/montage.py (tools/side_by_side.py): drawings side by side."""
import cv2
import numpy as np
import pytest

from projects_lda.deploy.montage import side_by_side


def _folder(path, names, value, shape=(20, 30)):
    path.mkdir()
    for n in names:
        cv2.imwrite(str(path / n), np.full((*shape, 3), value, np.uint8))
    return str(path)


def test_rows_are_images_columns_are_models(tmp_path):
    a = _folder(tmp_path / "a", ["1.png", "2.png"], 10)
    b = _folder(tmp_path / "b", ["1.png", "2.png"], 200, shape=(24, 30))
    grid = side_by_side([a, b], ["baseline", "LDA"], footer="CC BY-SA 4.0", gap=4)
    # header 40 + two rows of max(20, 24) + gap 4 + footer 28; two columns of 30 + gap 4
    assert grid.shape == (40 + 2 * (24 + 4) + 28, 2 * (30 + 4), 3)
    assert (grid[40:60, 0:30] == 10).all() and (grid[40:64, 34:64] == 200).all()
    assert len(side_by_side([a, b], ["x", "y"], max_rows=1)) == 40 + 24 + 8  # no footer


def test_folders_must_hold_the_same_drawings(tmp_path):
    a = _folder(tmp_path / "a", ["1.png", "2.png"], 10)
    b = _folder(tmp_path / "b", ["1.png"], 10)
    with pytest.raises(ValueError, match="hold different drawings, e.g. 2.png"):
        side_by_side([a, b], ["x", "y"])
    with pytest.raises(ValueError, match="1 labels for 2 folders"):
        side_by_side([a, b], ["x"])
