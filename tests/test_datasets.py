"""Tests of the LVIS-format dataset registration (projects_lda.data.datasets)."""
import copy
import json
import os
import pickle

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog, detection_utils
from detectron2.structures import BoxMode

import projects_lda.data  # noqa: F401  (registers the datasets)
from projects_lda.data import datasets as ds
from projects_lda.worlds import embedded
from projects_lda.worlds.datasets import register_embedded_lvis

SMALL = dict(
    num_classes=6, num_train_images=24, num_val_images=8, num_test_images=8, image_size=64
)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return embedded.generate_embedded_lvis(str(tmp_path_factory.mktemp("src")), seed=1, **SMALL)


@pytest.fixture
def data(source):
    """A fresh copy of the train JSON's content, to corrupt."""
    with open(source["train_json"]) as f:
        return json.load(f)


@pytest.fixture
def new_name(request):
    """Unique dataset names, unregistered after the test."""
    created = []

    def make(suffix="ds"):
        created.append(f"test_{request.node.name}_{suffix}")
        return created[-1]

    yield make
    for name in created:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.pop(name, None)
        ds._REGISTERED.pop(name, None)
        ds._LAZY.pop(name, None)


def _write(tmp_path, content, name="ann.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_register_and_load(source, data, new_name):
    name = new_name()
    ds.register_lvis_format(name, source["train_json"], source["root"])
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "lvis" and meta.json_file == source["train_json"]
    # per-class metadata is available before the dataset is loaded
    cats = data["categories"]
    assert meta.thing_classes == [c["name"] for c in cats]
    # detectron2's format (its LVIS metadata and federated loss): a dict per category, by id
    expected = [{"id": c["id"], "image_count": c["image_count"]} for c in cats]
    assert meta.class_image_count == expected
    assert meta.class_instance_count == [c["instance_count"] for c in cats]
    assert meta.class_frequency == [c["frequency"] for c in cats]
    dicts = DatasetCatalog.get(name)
    assert len(dicts) == len(data["images"])
    assert sum(len(d["annotations"]) for d in dicts) == len(data["annotations"])
    assert all(os.path.isfile(d["file_name"]) for d in dicts)
    objs = [o for d in dicts for o in d["annotations"]]
    assert {o["category_id"] for o in objs} <= set(range(len(cats)))
    assert objs[0]["bbox_mode"] == BoxMode.XYWH_ABS
    assert all("neg_category_ids" in d for d in dicts)


def test_metadata_set_by_loading_without_prior_access(source, new_name):
    name = new_name()
    ds.register_lvis_format(name, source["val_json"], source["root"] + "/")
    assert "thing_classes" not in MetadataCatalog.get(name).__dict__  # lazy: nothing read yet
    DatasetCatalog.get(name)
    assert name not in ds._LAZY
    assert len(MetadataCatalog.get(name).__dict__["class_frequency"]) == 6


def test_lazy_metadata_copies_and_pickles(source, new_name):
    name = new_name()
    ds.register_lvis_format(name, source["train_json"], source["root"])
    meta = MetadataCatalog.get(name)
    copied = copy.deepcopy(meta)
    assert copied.thing_classes == pickle.loads(pickle.dumps(meta)).thing_classes
    assert meta.__dict__["thing_classes"] == copied.thing_classes  # resolved for both
    assert copied.get("no_such_key", 7) == 7


def test_reregistration(source, new_name):
    name = new_name()
    ds.register_lvis_format(name, source["train_json"], source["root"])
    ds.register_lvis_format(name, source["train_json"], source["root"])  # same: no-op
    with pytest.raises(ValueError, match="already registered"):
        ds.register_lvis_format(name, source["val_json"], source["root"])
    other = new_name("other")
    DatasetCatalog.register(other, lambda: [])
    with pytest.raises(ValueError, match="another module"):
        ds.register_lvis_format(other, source["train_json"], source["root"])


def test_missing_json(tmp_path, source, new_name):
    name = new_name()
    missing = str(tmp_path / "nope.json")
    ds.register_lvis_format(name, missing, source["root"])
    with pytest.raises(FileNotFoundError, match=missing):
        DatasetCatalog.get(name)
    with pytest.raises(FileNotFoundError, match=missing):
        MetadataCatalog.get(name).thing_classes


def test_malformed_json(tmp_path, source, new_name):
    path = _write(tmp_path, '{"images": [], "annotations": [\n{"id": 1,}]')
    name = new_name()
    ds.register_lvis_format(name, path, source["root"])
    with pytest.raises(ValueError, match="Malformed JSON") as e:
        DatasetCatalog.get(name)
    assert path in str(e.value) and "line 2" in str(e.value)


def test_missing_top_level_key(tmp_path, source, data, new_name):
    del data["categories"]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match="categories") as e:
        ds.load_lvis_format(path, source["root"])
    assert path in str(e.value)


def test_sparse_category_ids_map_to_contiguous_ones(tmp_path, source, data, new_name):
    """COCO's ids with gaps: contiguous ids in id order, the file's ids kept in the metadata."""
    sparse = {c["id"]: 2 * c["id"] + 5 for c in data["categories"]}  # 7, 9, ..., 17
    for c in data["categories"]:
        c["id"] = sparse[c["id"]]
    for ann in data["annotations"]:
        ann["category_id"] = sparse[ann["category_id"]]
    for img in data["images"]:  # LVIS's lists name the file's ids too
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            img[key] = [sparse[c] for c in img.get(key, ())]
    data["categories"].reverse()  # any order in the file
    name = new_name()
    ds.register_lvis_format(name, _write(tmp_path, data), source["root"])
    dicts = DatasetCatalog.get(name)
    meta = MetadataCatalog.get(name)
    assert meta.thing_dataset_id_to_contiguous_id == {7 + 2 * i: i for i in range(6)}
    assert [c["id"] for c in meta.class_image_count] == [7 + 2 * i for i in range(6)]
    objs = [o["category_id"] for d in dicts for o in d["annotations"]]
    assert objs == [(sparse[a] - 7) // 2 for a in _original_category_ids(source)]


def _original_category_ids(source):
    """The train file's annotations' category ids, in the records' order (image id, file)."""
    with open(source["train_json"]) as f:
        d = json.load(f)
    order = {iid: i for i, iid in enumerate(sorted(img["id"] for img in d["images"]))}
    anns = sorted(enumerate(d["annotations"]), key=lambda p: (order[p[1]["image_id"]], p[0]))
    return [a["category_id"] for _, a in anns]


def test_unknown_category_id(tmp_path, source, data):
    ann = data["annotations"][5]
    ann["category_id"] = 77
    path = _write(tmp_path, data)
    with pytest.raises(ValueError) as e:
        ds.load_lvis_format(path, source["root"])
    msg = str(e.value)
    assert f"Annotation id {ann['id']}" in msg and "category_id 77" in msg and path in msg


def test_unknown_image_id_and_bad_polygon(tmp_path, source, data):
    data["annotations"][0]["image_id"] = 123456
    path = _write(tmp_path, data, "a.json")
    with pytest.raises(ValueError, match="image_id 123456"):
        ds.load_lvis_format(path, source["root"])
    data["annotations"][0]["image_id"] = data["images"][0]["id"]
    data["annotations"][1]["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]
    path = _write(tmp_path, data, "b.json")
    bad_id = data["annotations"][1]["id"]
    with pytest.raises(ValueError, match=f"Annotation id {bad_id} .*polygons"):
        ds.load_lvis_format(path, source["root"])


def test_missing_image(tmp_path, source, data):
    img = data["images"][3]
    data["images"][3]["coco_url"] = img["coco_url"].replace(".png", "_gone.png")
    path = _write(tmp_path, data)
    with pytest.raises(FileNotFoundError) as e:
        ds.load_lvis_format(path, source["root"])
    gone = os.path.join(source["root"], "train", f"{img['id']:012d}_gone.png")
    assert gone in str(e.value) and f"image id {img['id']}" in str(e.value)
    assert len(ds.load_lvis_format(path, source["root"], check_images=False)) == 24


def test_counts_computed_when_missing(tmp_path, source, data):
    expected = ds.class_metadata(data, "x.json")
    for cat in data["categories"]:
        del cat["image_count"], cat["instance_count"], cat["frequency"]
    assert ds.class_metadata(data, "x.json") == expected


def test_register_from_env(tmp_path, source, monkeypatch, new_name):
    a, b = new_name("a"), new_name("b")
    root = source["root"]
    spec = f"{a}:{source['train_json']}:{root}; {b}:{source['val_json']}:{root};"
    monkeypatch.setenv(ds.EXTRA_DATASETS_ENV, spec)
    assert ds.register_from_env() == [a, b]
    assert ds.register_from_env() == [a, b]  # idempotent
    assert len(DatasetCatalog.get(b)) == 8
    assert MetadataCatalog.get(a).thing_classes == MetadataCatalog.get(b).thing_classes


def test_parse_dataset_spec():
    assert ds.parse_dataset_spec("x:/a/b.json:/a/") == ("x", "/a/b.json", "/a/", None)
    assert ds.parse_dataset_spec("x:/a/b.json:/a/:exhaustive")[3] == "exhaustive"
    for bad in ("x:/a/b.json", "x:a:b:c:d", ":a:b"):
        with pytest.raises(ValueError, match="name:json_file:image_root"):
            ds.parse_dataset_spec(bad)
    with pytest.raises(ValueError, match="fourth field 'c'"):
        ds.parse_dataset_spec("x:a:b:c")


def test_embedded_registered_on_import_without_generating():
    for name in (f"lvis_embedded{v}_{s}" for v in ("", "_fed") for s in ("train", "val", "test")):
        assert name in DatasetCatalog.list()
        assert MetadataCatalog.get(name).evaluator_type == "lvis"
        if name in ds._LAZY:  # not used yet in this process: nothing read or generated
            assert "thing_classes" not in MetadataCatalog.get(name).__dict__


def test_embedded_generated_on_first_use(tmp_path, monkeypatch, new_name):
    train, val = new_name("train"), new_name("val")
    prefix = train[: -len("_train")]
    assert val == prefix + "_val"
    register_embedded_lvis(prefix=prefix)
    root = tmp_path / "emb"
    monkeypatch.setenv("LDA_EMBEDDED_ROOT", str(root))  # read on first use, not at registration
    assert not root.exists()
    meta = MetadataCatalog.get(train)
    classes = meta.thing_classes  # generates the dataset
    assert (root / "meta.json").is_file() and len(classes) == 24
    assert meta.json_file == str(root / "lvis_embedded_train.json")
    assert meta.image_root == str(root) + "/"
    assert {"r", "c", "f"} == set(meta.class_frequency)
    dicts = DatasetCatalog.get(val)
    assert len(dicts) == 120 and dicts[0]["file_name"].startswith(str(root / "val"))
    assert MetadataCatalog.get(val).class_image_count == meta.class_image_count


def test_builtin_lvis_metadata_completed():
    meta = MetadataCatalog.get("lda_lvis_v1_train")
    assert meta.evaluator_type == "lvis" and len(meta.thing_classes) == 1203
    assert len(meta.class_frequency) == 1203 and set(meta.class_frequency) == {"r", "c", "f"}
    assert MetadataCatalog.get("lda_lvis_v1_val").class_frequency == meta.class_frequency
    if not os.path.isfile(meta.json_file):
        with pytest.raises(FileNotFoundError, match="DETECTRON2_DATASETS"):
            meta.class_image_count
        with pytest.raises(FileNotFoundError, match="lvis_v1_train.json.*DETECTRON2_DATASETS"):
            DatasetCatalog.get("lda_lvis_v1_train")  # the project's loader (test_lvis_shape.py)


def test_detectron2_lvis_registrations_are_kept():
    # the project registers its own names; detectron2's keep their loader and metadata
    for name in ("lvis_v1_train", "lvis_v1_val"):
        assert DatasetCatalog[name].__module__ == "detectron2.data.datasets.lvis", name
        assert "class_frequency" not in MetadataCatalog.get(name).__dict__, name
        assert MetadataCatalog.get("lda_" + name).json_file == MetadataCatalog.get(name).json_file


# detectron2's federated loss (ROI_BOX_HEAD.USE_FED_LOSS, main), which reads the training set's
# class_image_count metadata
HAS_FED_LOSS = hasattr(detection_utils, "get_fed_loss_cls_weights")


@pytest.mark.skipif(not HAS_FED_LOSS, reason="this detectron2 build has no federated loss")
def test_detectron2_federated_loss_reads_the_project_metadata(source, data, new_name):
    from detectron2.data.detection_utils import get_fed_loss_cls_weights

    name = new_name()
    ds.register_lvis_format(name, source["train_json"], source["root"])
    counts = [c["image_count"] for c in sorted(data["categories"], key=lambda c: c["id"])]
    weights = get_fed_loss_cls_weights([name], freq_weight_power=0.5)
    assert weights.tolist() == pytest.approx([n**0.5 for n in counts])


def test_counts_are_per_split(tmp_path, source, new_name):
    """Each split's counts come from its own file."""
    train, val = new_name("train"), new_name("val")
    with open(source["val_json"]) as f:
        content = json.load(f)
    content["categories"][0]["image_count"] = 99
    val_json = _write(tmp_path, content, "val.json")
    ds.register_lvis_format(train, source["train_json"], source["root"])
    ds.register_lvis_format(val, val_json, source["root"])
    assert MetadataCatalog.get(val).class_image_count[0] == {"id": 1, "image_count": 99}
    assert MetadataCatalog.get(train).class_image_count[0] == {"id": 1, "image_count": 3}
