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


def test_a_ground_truth_column_draws_the_datasets_annotations(tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    image = tmp_path / "img" / "1.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.full((48, 64, 3), 128, np.uint8))
    box = {"bbox": [8, 8, 40, 40], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1}
    name = "montage_test_truth"
    DatasetCatalog.register(name, lambda: [{"file_name": str(image), "height": 48, "width": 64,
                                            "image_id": 1, "annotations": [box]}])
    MetadataCatalog.get(name).set(thing_classes=["cat", "dog"], thing_colors=[(0, 0, 0)] * 2)
    np.random.seed(0)  # the jitter's colour
    try:
        # drawings as tools/demo.py makes them: the image enlarged to a 512-px longer side
        drawn = _folder(tmp_path / "lda", ["1.png"], 128, shape=(384, 512))
        grid = side_by_side([drawn], ["LDA"], gap=0, ground_truth=name)
        assert grid.shape == (40 + 384, 2 * 512, 3)
        truth = grid[40:, :512].astype(int)
        # the box (8, 8)-(40, 40) of the 64-px image is drawn 8x larger; Visualizer jitters
        # the class's black to a random dark colour drawn half transparent, 36 to 195 grey
        # levels (summed over channels) from the grey in 200 draws
        assert (np.abs(truth[70:250, 62:66] - 128).sum(axis=2) > 20).all()  # left edge
        assert (truth[150, 150] == 128).all() and (grid[40:, 512:] == 128).all()
        with pytest.raises(ValueError, match="no image of it is named 2.png"):
            side_by_side([_folder(tmp_path / "b", ["2.png"], 0)], ["b"], ground_truth=name)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    with pytest.raises(ValueError, match="--ground-truth montage_test_truth: no such"):
        side_by_side([drawn], ["LDA"], ground_truth=name)
