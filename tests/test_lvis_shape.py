"""The LVIS v1-shaped dataset: its fields and split, and that the loaders read it."""
import collections
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis import load_lvis_json
from detectron2.data.samplers import RepeatFactorTrainingSampler

from projects_lda.data.class_freq import (
    class_frequencies,
    class_frequencies_from_datasets,
    class_image_counts,
    image_count_provider,
    repeat_factors_from_lists,
)
from projects_lda.config import get_project_cfg
from projects_lda.data import datasets as ds
from projects_lda.worlds.lvis_shaped import generate_lvis_shaped, lvis_shaped_category_counts

IMAGE_KEYS = {
    "id", "license", "height", "width", "coco_url", "flickr_url", "date_captured",
    "neg_category_ids", "not_exhaustive_category_ids",
}
ANN_KEYS = {"id", "image_id", "category_id", "bbox", "area", "segmentation"}
CAT_KEYS = {"id", "name", "synset", "synonyms", "def", "frequency", "image_count", "instance_count"}


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    root = tmp_path_factory.mktemp("lvis_shaped")
    paths = generate_lvis_shaped(str(root), "tiny", pool_size=4)
    with open(paths["train_json"]) as f:
        train = json.load(f)
    with open(paths["val_json"]) as f:
        val = json.load(f)
    return paths, train, val


@pytest.fixture
def registered(shaped):
    paths = shaped[0]
    names = []
    for split in ("train", "val"):
        name = f"test_lvis_shaped_{split}"
        ds.register_lvis_format(name, paths[f"{split}_json"], paths["image_root"])
        names.append(name)
    yield names
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.pop(name, None)
        ds._REGISTERED.pop(name, None)
        ds._LAZY.pop(name, None)
        ds._LOADED_METADATA.pop(name, None)


def test_full_size_counts_follow_lvis_bands():
    cats, counts = lvis_shaped_category_counts()
    freq = np.array([c["frequency"] for c in cats])
    assert collections.Counter(freq.tolist()) == {"r": 337, "c": 461, "f": 405}
    assert [c["id"] for c in cats] == list(range(1, 1204))
    assert counts[freq == "r"].min() == 1 and counts[freq == "r"].max() == 10
    assert counts[freq == "c"].min() == 11 and counts[freq == "c"].max() == 100
    assert counts[freq == "f"].min() == 101 and 20000 < counts[freq == "f"].max() <= 25000
    # long tail: the top 5% of classes hold more images than the bottom 50%
    s = np.sort(counts)
    assert s[-60:].sum() > s[:600].sum()


def test_fields_and_split(shaped):
    paths, train, val = shaped
    assert paths["train_images"] == len(train["images"]) == 48
    for data in (train, val):
        assert len(data["categories"]) == 1203
        assert all(set(c) == CAT_KEYS for c in data["categories"])
        assert all(set(i) == IMAGE_KEYS for i in data["images"])
        assert all(set(a) == ANN_KEYS for a in data["annotations"])
        freq = collections.Counter(c["frequency"] for c in data["categories"])
        assert freq == {"r": 337, "c": 461, "f": 405}
        present = collections.defaultdict(set)
        for a in data["annotations"]:
            present[a["image_id"]].add(a["category_id"])
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 480 and w > 0 and h > 0
            (poly,) = a["segmentation"]
            assert len(poly) == 24
        image_count = collections.Counter(c for s in present.values() for c in s)
        instance_count = collections.Counter(a["category_id"] for a in data["annotations"])
        for c in data["categories"]:
            assert c["image_count"] == image_count[c["id"]]
            assert c["instance_count"] == instance_count[c["id"]]
        for img in data["images"]:
            assert (img["height"], img["width"]) == (480, 640)
            assert not set(img["neg_category_ids"]) & present[img["id"]]
            assert set(img["not_exhaustive_category_ids"]) <= present[img["id"]]
            assert img["id"] in present  # every image holds an instance
    # every category has a training image; training and validation image ids are distinct
    assert all(c["image_count"] >= 1 for c in train["categories"])
    assert not {i["id"] for i in train["images"]} & {i["id"] for i in val["images"]}
    # records share a small pool of real 640x480 images
    files = {i["coco_url"].split("/")[-1] for i in train["images"]}
    assert len(files) <= 4
    img = cv2.imread(paths["image_root"] + "train2017/" + sorted(files)[0])
    assert img.shape == (480, 640, 3)


def test_same_seed_same_files_and_reuse(shaped, tmp_path):
    paths = shaped[0]
    again = generate_lvis_shaped(str(tmp_path), "tiny", pool_size=4)
    digest = lambda p: hashlib.md5(open(p, "rb").read()).hexdigest()  # noqa: E731
    assert digest(again["train_json"]) == digest(paths["train_json"])
    before = (tmp_path / "lvis_v1_train.json").stat().st_mtime_ns
    generate_lvis_shaped(str(tmp_path), "tiny", pool_size=4)  # already there: not rewritten
    assert (tmp_path / "lvis_v1_train.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        generate_lvis_shaped(str(tmp_path), "huge")


def test_project_loader_equals_detectron2_loader(shaped):
    """The project parses the file once; its records are exactly detectron2's."""
    from lvis import LVIS

    paths = shaped[0]
    for split in ("train", "val"):
        ours = ds.load_lvis_format(paths[f"{split}_json"], paths["image_root"])
        theirs = load_lvis_json(paths[f"{split}_json"], paths["image_root"])
        assert ours == theirs
        assert len(LVIS(paths[f"{split}_json"]).get_img_ids()) == len(ours)


def test_registration_and_class_statistics(shaped, registered):
    train, val = registered
    dicts = DatasetCatalog.get(train)
    meta = MetadataCatalog.get(train)
    assert len(meta.thing_classes) == 1203 and meta.thing_classes[0] == "aerosol_can"
    assert collections.Counter(meta.class_frequency) == {"r": 337, "c": 461, "f": 405}
    assert len(DatasetCatalog.get(val)) == shaped[0]["val_images"] == len(shaped[2]["images"])
    # statistics from the class lists kept at load time equal those computed from the dicts
    for source, thresh in (("sampled", 0.001), ("sampled", 0.0), ("annotations", 0.001)):
        fast = class_frequencies_from_datasets([train], 1203, source=source, repeat_thresh=thresh)
        slow = class_frequencies(dicts, 1203, source=source, repeat_thresh=thresh)
        assert torch.allclose(fast, slow, rtol=1e-6), source
    cfg = get_project_cfg()
    cfg.DATASETS.TRAIN = (train,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1203
    assert torch.equal(image_count_provider(cfg)(), class_image_counts(dicts, 1203))
    with pytest.raises(ValueError,
                       match=r"test_lvis_shaped_train.*category_id 1202.*NUM_CLASSES=30"):
        class_frequencies_from_datasets([train], 30)


def test_class_statistics_do_not_load_the_dataset_again(registered, monkeypatch):
    train = registered[0]
    DatasetCatalog.get(train)
    parsed = []
    monkeypatch.setattr(ds, "_read_json", lambda f: parsed.append(f))
    class_frequencies_from_datasets([train], 1203, repeat_thresh=0.001)
    assert parsed == []


# Run with detectron2's builtin LVIS v1 splits pointing at the LVIS-shaped files (the builtin
# names are registered when detectron2 is imported, from $DETECTRON2_DATASETS). Counts the JSON
# parses (json.load, which detectron2's loader and the project's both use) at each step.
_BUILTIN_SCRIPT = """
import json, sys
import torch
counter = []
_json_load = json.load
json.load = lambda *a, **k: (counter.append(1), _json_load(*a, **k))[1]
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.lvis import get_lvis_instances_meta, load_lvis_json
from projects_lda.config import get_project_cfg
from projects_lda.data import datasets as ds
from projects_lda.data.class_freq import (
    class_frequencies, class_frequencies_from_datasets, class_image_counts, image_count_provider)

train, val = "lda_lvis_v1_train", "lda_lvis_v1_val"
meta = MetadataCatalog.get(train)
d2_meta = get_lvis_instances_meta(train)
assert meta.thing_classes == d2_meta["thing_classes"] and counter == []
lazy_counts = ds._LAZY[train][1]
dicts = DatasetCatalog.get(train)
assert len(counter) == 1, counter  # parsed once by the loader
with open(meta.json_file) as f:
    cats = sorted(_json_load(f)["categories"], key=lambda c: c["id"])
image_count = [{"id": c["id"], "image_count": c["image_count"]} for c in cats]
assert meta.class_image_count == image_count
assert meta.class_instance_count == [c["instance_count"] for c in cats]
assert meta.thing_classes == d2_meta["thing_classes"]
assert meta.class_frequency == [c["frequency"] for c in cats]
assert lazy_counts() == {"class_image_count": image_count,
                         "class_instance_count": meta.class_instance_count}
for source, thresh in (("sampled", 0.001), ("annotations", 0.0)):
    fast = class_frequencies_from_datasets([train], 1203, source=source, repeat_thresh=thresh)
    slow = class_frequencies(dicts, 1203, source=source, repeat_thresh=thresh)
    assert torch.allclose(fast, slow, rtol=1e-6), source
cfg = get_project_cfg()
cfg.DATASETS.TRAIN = (train,)
cfg.MODEL.ROI_HEADS.NUM_CLASSES = 1203
assert torch.equal(image_count_provider(cfg)(), class_image_counts(dicts, 1203))
assert len(counter) == 1, counter  # the class statistics did not parse the file again
val_counts = MetadataCatalog.get(val).class_image_count  # lazy: parses the val file
assert len(counter) == 2 and len(val_counts) == 1203
val_dicts = DatasetCatalog.get(val)
assert len(counter) == 3 and MetadataCatalog.get(val).class_image_count == val_counts
for name, ours in ((train, dicts), (val, val_dicts)):
    m = MetadataCatalog.get(name)
    json_file, image_root = m.json_file, m.image_root
    # detectron2's loader sets its own metadata (with detectron2 main, the v1 *training*
    # class_image_count, which the project replaced by the split's): drop ours first
    MetadataCatalog.remove(name)
    assert ours == load_lvis_json(json_file, image_root, name), name
print("ok", len(dicts), len(val_dicts))
"""


def test_builtin_lvis_splits_use_the_single_parse_loader(shaped, tmp_path):
    """
    ``lda_lvis_v1_train`` / ``lda_lvis_v1_val`` are loaded by the project's loader: the
    records are detectron2's, images are not checked (the ``coco`` folder here is empty), the
    metadata keeps detectron2's values, and the class statistics reuse the loaded class lists.
    """
    paths = shaped[0]
    (tmp_path / "lvis").mkdir()
    (tmp_path / "coco").mkdir()
    for split in ("train", "val"):
        os.symlink(paths[f"{split}_json"], tmp_path / "lvis" / f"lvis_v1_{split}.json")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path), PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", _BUILTIN_SCRIPT], cwd=str(root), env=env, capture_output=True,
        text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[:1000] + proc.stderr[-1500:]
    assert proc.stdout.split()[-3:] == ["ok", str(paths["train_images"]), str(paths["val_images"])]


def test_vectorised_repeat_factors_equal_detectron2s():
    rng = np.random.default_rng(0)
    dicts = [
        {"annotations": [{"category_id": int(c)} for c in rng.integers(0, 7, rng.integers(0, 5))]}
        for _ in range(50)
    ]
    counts = np.array([len(d["annotations"]) for d in dicts])
    cats = np.array([a["category_id"] for d in dicts for a in d["annotations"]], dtype=np.int64)
    ours = repeat_factors_from_lists(cats, counts, 7, 0.3)
    theirs = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, 0.3)
    assert np.allclose(ours, theirs.numpy(), rtol=1e-6)
    assert ours.max() > 1.0  # the threshold makes some classes repeat
