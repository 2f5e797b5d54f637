"""
A trained model outside training: class names in the checkpoint, the demo on a folder and on a
video, the results file, and the export's parity with the eager model (projects_lda.deploy).
"""
import json
import logging
import shutil

import cv2
import numpy as np
import pytest
import torch

from detectron2.data.catalog import Metadata
from detectron2.structures import Boxes, Instances

from projects_lda.data.class_names import CHECKPOINT_KEY, ClassNames, class_names_from_metadata
from projects_lda.deploy import Predictor, model_class_names
from projects_lda.deploy.commands import demo, export, inference_config
from projects_lda.deploy.demo import expand_inputs, image_output_paths
from projects_lda.deploy.export import (
    ExportedModel,
    ExportError,
    Parity,
    compare_predictions,
    parity_problems,
    read_model_input,
)
from projects_lda.deploy.results import image_ids_for_files, instances_to_results
from projects_lda.engine.checkpoint import load_checkpoint_file

from conftest import TINY_CLASSES

TINY_NAMES = ["disc_light", "disc_medium", "disc_dark", "square_regular", "square_stretched",
              "square_elongated"]


def _cfg(run, *opts, threshold=None):
    return inference_config(str(run["dir"] / "config.yaml"),
                            ["MODEL.WEIGHTS", str(run["weights"]), *opts], threshold)


def _val_images(tiny_dataset, n):
    return sorted((tiny_dataset["root"] / "val").iterdir())[:n]


# ------------------------------------------------------------------------ class names
def test_training_checkpoint_holds_the_class_names(trained_lda):
    stored = load_checkpoint_file(str(trained_lda["weights"]))[CHECKPOINT_KEY]
    assert stored == {"thing_classes": TINY_NAMES, "dataset_ids": [1, 2, 3, 4, 5, 6]}


def test_predictor_takes_the_names_from_the_checkpoint_without_the_dataset(trained_lda):
    # no dataset of the config is registered: the names can only come from the checkpoint
    cfg = _cfg(trained_lda, "DATASETS.TEST", "('not_registered',)",
               "DATASETS.TRAIN", "('not_registered_either',)")
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    fvcore_log = logging.getLogger("fvcore.common.checkpoint")
    fvcore_log.addHandler(handler)
    try:
        predictor = Predictor(cfg)
    finally:
        fvcore_log.removeHandler(handler)
    assert predictor.class_names.thing_classes == TINY_NAMES
    assert predictor.metadata.thing_classes == TINY_NAMES
    # the real weights are loaded: no "initializing from scratch" from the base class
    assert not any("from scratch" in m for m in seen) and any("Loading from" in m for m in seen)


def test_checkpoint_without_names_uses_the_config_dataset(trained_lda, tmp_path):
    data = load_checkpoint_file(str(trained_lda["weights"]))
    del data[CHECKPOINT_KEY]  # as detectron2, or this project before names were saved, wrote it
    old = tmp_path / "old.pth"
    torch.save(data, old)
    names = model_class_names(_cfg(trained_lda), data, str(old))
    assert names.thing_classes == TINY_NAMES and names.dataset_ids == [1, 2, 3, 4, 5, 6]
    cfg = _cfg(trained_lda, "DATASETS.TEST", "('not_registered',)", "DATASETS.TRAIN", "()")
    with pytest.raises(ValueError, match=r"old\.pth holds no class names .*'not_registered'"):
        model_class_names(cfg, data, str(old))


def test_class_count_mismatch_is_a_clear_error(trained_lda):
    cfg = _cfg(trained_lda)
    five = {CHECKPOINT_KEY: ClassNames(TINY_NAMES[:5]).state_dict()}
    with pytest.raises(ValueError, match=r"w\.pth holds 5 classes but the config's "
                                         r"MODEL.ROI_HEADS.NUM_CLASSES is 6"):
        model_class_names(cfg, five, "w.pth")
    # the weights of a 6-class model in a 7-class config: named, not silently re-initialised
    with pytest.raises(ValueError, match=r"model_final\.pth does not fit .*NUM_CLASSES 7\): "
                       r"roi_heads.box_predictor.class_freq \(6,\) in the checkpoint, "
                       r"\(7,\) in the model; .*; 6 more tensors"):
        Predictor(_cfg(trained_lda, "MODEL.ROI_HEADS.NUM_CLASSES", "7"))


def test_dataset_ids_follow_the_metadata_mapping():
    meta = Metadata(name="m", thing_classes=["a", "b", "c"],
                    thing_dataset_id_to_contiguous_id={10: 0, 30: 2, 20: 1})
    assert class_names_from_metadata(meta).dataset_ids == [10, 20, 30]
    assert class_names_from_metadata(Metadata(name="n", thing_classes=["a", "b"])).dataset_ids \
        == [1, 2]
    bad = Metadata(name="bad", thing_classes=["a"], thing_dataset_id_to_contiguous_id={7: 1})
    with pytest.raises(ValueError, match="dataset bad: .* maps 7 to 1, outside 0..0"):
        class_names_from_metadata(bad)
    with pytest.raises(ValueError, match="ckpt: 'class_names' must be a dict"):
        ClassNames.from_state(["a"], where="ckpt")


# ------------------------------------------------------------------------ results file
def test_results_entries_use_the_dataset_category_ids():
    inst = Instances((4, 6))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 0.0, 4.0, 2.0]]))
    inst.scores = torch.tensor([0.75])
    inst.pred_classes = torch.tensor([1])
    mask = torch.zeros(1, 4, 6, dtype=torch.bool)
    mask[0, 0:2, 1:4] = True
    inst.pred_masks = mask
    (entry,) = instances_to_results(inst, 139, ClassNames(["a", "b"], [10, 20]), "x/139.jpg")
    assert entry["image_id"] == 139 and entry["category_id"] == 20
    assert entry["bbox"] == [1.0, 0.0, 3.0, 2.0] and entry["score"] == 0.75
    assert entry["segmentation"]["size"] == [4, 6]
    assert isinstance(entry["segmentation"]["counts"], str)
    assert entry["file_name"] == "x/139.jpg"


def test_image_ids_from_numeric_names_else_positions():
    assert image_ids_for_files(["a/000000000139.jpg", "b/7.png"]) == [139, 7]
    assert image_ids_for_files(["a/139.jpg", "b/cat.png"]) == [1, 2]
    assert image_ids_for_files(["a/01.jpg", "b/1.png"]) == [1, 2]  # the same number twice


def test_inputs_expand_folders_globs_and_name_what_is_missing(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    assert expand_inputs([str(tmp_path)]) == [str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]
    assert expand_inputs([str(tmp_path / "*.png")]) == [str(tmp_path / "b.png")]
    with pytest.raises(FileNotFoundError, match="no such file or folder: .*nope.jpg"):
        expand_inputs([str(tmp_path / "nope.jpg")])
    with pytest.raises(FileNotFoundError, match="folder .*empty holds no image"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(FileNotFoundError, match=r"pattern .*\*\.gif matches no file"):
        expand_inputs([str(tmp_path / "*.gif")])
    with pytest.raises(ValueError, match="several inputs are named b.png"):
        image_output_paths(["x/b.png", "y/b.png"], "out")


# ------------------------------------------------------------------------ demo
def test_demo_on_a_folder_writes_drawings_and_an_evaluable_results_file(
    trained_lda, tiny_dataset, tmp_path
):
    from lvis import LVIS, LVISEval, LVISResults

    folder = tmp_path / "images"
    folder.mkdir()
    images = _val_images(tiny_dataset, 3)
    for f in images:
        shutil.copy(f, folder)
    broken = folder / "000000000999.png"
    broken.write_bytes(b"not an image")
    cfg = _cfg(trained_lda, "TEST.DETECTIONS_PER_IMAGE", "3", threshold=0.0)
    out, results = tmp_path / "vis", tmp_path / "results.json"
    summary = demo(cfg, inputs=[str(folder)], output=str(out), json_file=str(results),
                   progress=False)

    assert summary.images == 3 and summary.detections == 9 and summary.seconds > 0
    assert [p for p, _ in summary.skipped] == [str(broken)]
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in images)
    for f in images:  # the drawing of an image enlarged for readable labels (512 px)
        assert cv2.imread(str(out / f.name)).shape == (512, 512, 3)
    entries = json.loads(results.read_text())
    ids = {int(f.stem) for f in images}
    assert len(entries) == 9 and {e["image_id"] for e in entries} == ids
    assert {e["category_id"] for e in entries} <= set(range(1, TINY_CLASSES + 1))
    gt = LVIS(str(tiny_dataset["val_json"]))
    evaluation = LVISEval(gt, LVISResults(gt, str(results)), "segm")
    evaluation.params.img_ids = sorted(ids)
    evaluation.run()
    assert 0.0 <= evaluation.get_results()["AP"] <= 1.0


def test_demo_on_a_video(trained_lda, tiny_dataset, tmp_path):
    frames = [cv2.imread(str(f)) for f in _val_images(tiny_dataset, 3)]
    h, w = frames[0].shape[:2]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    cfg = _cfg(trained_lda, "TEST.DETECTIONS_PER_IMAGE", "2", threshold=0.0)
    out, results = tmp_path / "out.mp4", tmp_path / "video.json"
    summary = demo(cfg, video=str(video), output=str(out), json_file=str(results),
                   progress=False)

    assert summary.images == 3 and summary.detections == 6
    drawn = cv2.VideoCapture(str(out))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    ok, first = drawn.read()
    assert ok and first.shape == (h, w, 3)
    entries = json.loads(results.read_text())
    assert sorted({e["image_id"] for e in entries}) == [0, 1, 2]
    with pytest.raises(ValueError, match=r"out\.gif: a video is written as \.mp4, \.avi, \.mkv"):
        demo(cfg, video=str(video), output=str(tmp_path / "out.gif"), progress=False)


# ------------------------------------------------------------------------ export
@pytest.fixture(scope="module")
def other_size_image(tiny_dataset, tmp_path_factory):
    """A test image cropped to another aspect ratio: the export is traced on it, and its parity
    is checked on the square test images (the trace must not keep the sample's size)."""
    image = cv2.imread(str(_val_images(tiny_dataset, 1)[0]))
    path = tmp_path_factory.mktemp("sample") / "crop.png"
    cv2.imwrite(str(path), np.ascontiguousarray(image[:, : image.shape[1] * 3 // 4]))
    return str(path)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("model", ["lda", "baseline"])
def test_export_equals_the_eager_model(model, fmt, request, other_size_image, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    run = request.getfixturevalue(f"trained_{model}")
    out = export(_cfg(run), output=str(tmp_path), fmt=fmt, sample_image=other_size_image,
                 num_check=3)

    assert out["problems"] == []
    assert len(out["parity"]) == 3 and all(p.detections == 20 for p in out["parity"])
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["thing_classes"] == TINY_NAMES
    assert info["outputs"] == ["boxes", "scores", "classes", "masks"]
    # detectron2's test loader gives uint8 images (--run-eval): the same predictions
    x = read_model_input(out["files"][1], _cfg(run))
    exported = ExportedModel(str(tmp_path))
    as_uint8 = dict(x, image=x["image"].to(torch.uint8))
    a, b = exported([x])[0]["instances"], exported([as_uint8])[0]["instances"]
    assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_masks, b.pred_masks)


def test_scripting_exports_the_baseline_and_names_why_lda_cannot(
    trained_baseline, trained_lda, tiny_dataset, tmp_path
):
    out = export(_cfg(trained_baseline), output=str(tmp_path / "base"), method="scripting",
                 num_check=2)
    assert out["problems"] == [] and (tmp_path / "base" / "model.ts").is_file()
    with pytest.raises(ExportError, match="LDAROIHeads cannot be scripted .*--export-method "
                                          "tracing"):
        export(_cfg(trained_lda), output=str(tmp_path / "lda"), method="scripting", num_check=1)
    with pytest.raises(ExportError, match="ONNX is exported by tracing"):
        export(_cfg(trained_lda), output=str(tmp_path / "x"), fmt="onnx", method="scripting")


def _instances(boxes, scores, classes):
    inst = Instances((20, 20))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.tensor(classes)
    masks = torch.zeros(len(boxes), 20, 20, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, int(y0):int(y1), int(x0):int(x1)] = True
    inst.pred_masks = masks
    return inst


def test_parity_matches_tied_detections_in_either_order():
    ref = _instances([[0, 0, 4, 4], [10, 10, 14, 14], [2, 2, 6, 6]], [0.9, 0.5, 0.5], [1, 2, 2])
    # the two detections of score 0.5 come out swapped, one box moved by 3e-5 px
    out = _instances([[0, 0, 4, 4], [2, 2, 6, 6.00003], [10, 10, 14, 14]],
                     [0.9, 0.50002, 0.5], [1, 2, 2])
    parity = compare_predictions(ref, out)
    assert parity.unmatched == 0 and parity.max_box_diff == pytest.approx(3e-5, abs=1e-6)
    assert parity.max_score_diff == pytest.approx(2e-5, abs=1e-6) and parity.min_mask_iou == 1.0
    assert parity_problems(parity) == []
    other = _instances([[0, 0, 4, 4], [2, 2, 6, 6], [10, 10, 14, 14]], [0.9, 0.5, 0.5],
                       [1, 2, 3])  # one class differs
    assert compare_predictions(ref, other).unmatched == 1


def test_parity_problems_name_each_difference():
    assert parity_problems(Parity(3, 3, 0, 5e-5, 1e-6, 0.995)) == []
    assert parity_problems(Parity(3, 2, 1, 2e-4, 3e-5, 0.5)) == [
        "2 detections, the eager model 3",
        "1 detections without an exported one of the same class and score",
        "box coordinates differ by 0.0002 > 0.0001", "a mask IoU is 0.5000 < 0.99",
    ]
