"""Tests of the embedded synthetic long-tailed dataset (projects_lda.worlds.embedded)."""
import json
import multiprocessing
import os
from collections import Counter, defaultdict

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest

from projects_lda.data import lvis_frequency
from projects_lda.worlds import embedded

SMALL = dict(
    num_classes=6, num_train_images=24, num_val_images=8, num_test_images=8, image_size=64
)


def _load(path):
    with open(path) as f:
        return json.load(f)


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return embedded.generate_embedded_lvis(str(tmp_path_factory.mktemp("small")), seed=3, **SMALL)


@pytest.fixture(scope="module")
def default(embedded_default):
    paths = embedded_default
    return paths, _load(paths["train_json"]), _load(paths["val_json"])


def _lvis_eval(gt_json, predictions, iou_type):
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(gt_json)
    ev = LVISEval(gt, LVISResults(gt, predictions), iou_type)
    ev.run()
    return ev.get_results()


def _gt_predictions(gt_json, relabel=None):
    from lvis import LVIS

    gt = LVIS(gt_json)
    preds = []
    for ann in gt.dataset["annotations"]:
        rle = gt.ann_to_rle(ann)
        rle["counts"] = rle["counts"].decode("ascii")
        cat = (relabel or {}).get(ann["category_id"], ann["category_id"])
        preds.append(
            {"image_id": ann["image_id"], "category_id": cat, "bbox": ann["bbox"],
             "segmentation": rle, "score": 1.0}
        )  # fmt: skip
    return preds


def test_same_seed_gives_identical_files(tmp_path, small):
    again = embedded.generate_embedded_lvis(str(tmp_path / "a"), seed=3, **SMALL)
    files, ref = _files(again["root"]), _files(small["root"])
    assert sorted(files) == sorted(ref)
    assert len([f for f in files if f.endswith(".png")]) == 24 + 8 + 8
    assert all(files[k] == ref[k] for k in ref)
    other = embedded.generate_embedded_lvis(str(tmp_path / "b"), seed=4, **SMALL)
    assert _files(other["root"])["lvis_embedded_train.json"] != ref["lvis_embedded_train.json"]


def test_lvis_v1_fields(small):
    for split in ("train", "val"):
        data = _load(small[f"{split}_json"])
        assert {"images", "annotations", "categories"} <= set(data)
        sizes = {}
        for img in data["images"]:
            keys = ("id", "width", "height", "coco_url", "license", "flickr_url", "date_captured")
            assert set(keys) <= set(img)
            assert {"neg_category_ids", "not_exhaustive_category_ids"} <= set(img)
            split_folder, file = img["coco_url"].split("/")[-2:]
            assert split_folder == split
            pixels = cv2.imread(os.path.join(small["root"], split_folder, file))
            assert pixels.shape == (img["height"], img["width"], 3)
            sizes[img["id"]] = (img["height"], img["width"])
        assert [c["id"] for c in data["categories"]] == list(range(1, 7))
        for cat in data["categories"]:
            for key in ("name", "synonyms", "synset", "def", "frequency", "image_count",
                        "instance_count"):  # fmt: skip
                assert key in cat, key
        for ann in data["annotations"]:
            h, w = sizes[ann["image_id"]]
            assert 1 <= ann["category_id"] <= 6
            (poly,) = ann["segmentation"]
            assert len(poly) >= 6 and len(poly) % 2 == 0
            x, y, bw, bh = ann["bbox"]
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 0 and bh > 0
            mask = mask_util.decode(mask_util.frPyObjects([poly], h, w))
            assert ann["area"] == mask.sum() > 0


def test_objects_do_not_overlap(default):
    _, train, _ = default
    masks = defaultdict(list)
    for ann in train["annotations"]:
        rles = mask_util.frPyObjects(ann["segmentation"], 128, 128)
        masks[ann["image_id"]].append(mask_util.decode(rles))
    assert max(np.sum(m, axis=0).max() for m in masks.values()) == 1


def test_category_stats_match_training_annotations(default):
    _, train, val = default
    images, instances = defaultdict(set), Counter()
    for ann in train["annotations"]:
        images[ann["category_id"]].add(ann["image_id"])
        instances[ann["category_id"]] += 1
    for cat in train["categories"]:
        assert cat["image_count"] == len(images[cat["id"]])
        assert cat["instance_count"] == instances[cat["id"]]
        assert cat["frequency"] == lvis_frequency(cat["image_count"])
    assert val["categories"] == train["categories"]  # val carries the training statistics


def test_default_long_tail_and_confusable_groups(default):
    paths, train, _ = default
    cats = train["categories"]
    groups = Counter(c["frequency"] for c in cats)
    assert groups["r"] >= 4 and groups["c"] >= 4 and groups["f"] >= 3
    assert _load(paths["meta"])["categories_per_frequency"] == dict(groups)
    by_shape = defaultdict(list)
    for c in cats:
        by_shape[c["name"].split("_")[0]].append(c)
    assert len(by_shape) == 8
    for shape, members in by_shape.items():
        counts = sorted(c["image_count"] for c in members)
        assert counts[0] <= 10 and counts[-1] >= 40, (shape, counts)  # rare + head sibling
    per_image = Counter(a["image_id"] for a in train["annotations"])
    assert len(per_image) == len(train["images"])  # every image has objects
    assert max(per_image.values()) <= 6 and 2 <= np.mean(list(per_image.values())) <= 4


def test_val_balanced_and_exhaustive(default):
    _, train, val = default
    per_class = Counter(a["category_id"] for a in val["annotations"])
    assert len(per_class) == len(val["categories"])
    assert 12 <= min(per_class.values()) and max(per_class.values()) - min(per_class.values()) <= 1
    all_ids = {c["id"] for c in val["categories"]}
    for data in (train, val):
        present = defaultdict(set)
        for ann in data["annotations"]:
            present[ann["image_id"]].add(ann["category_id"])
        for img in data["images"]:
            assert sorted(img["neg_category_ids"]) == sorted(all_ids - present[img["id"]])
            assert img["not_exhaustive_category_ids"] == []


def test_within_group_cues_are_visible(default):
    paths, _, val = default
    stats = defaultdict(list)
    for img in val["images"]:
        pixels = cv2.imread(os.path.join(paths["val_images"], img["coco_url"].split("/")[-1]))
        for ann in (a for a in val["annotations"] if a["image_id"] == img["id"]):
            mask = mask_util.decode(mask_util.frPyObjects(ann["segmentation"], 128, 128)) > 0
            values = pixels[mask[:, :, 0]].max(axis=1).astype(float)  # HSV value
            name = val["categories"][ann["category_id"] - 1]["name"]
            stats[name].append((values.mean(), values.std()))
    mean = {k: np.mean(v, axis=0) for k, v in stats.items()}
    for shape in ("disc", "ring", "star"):  # shade cue: brightness
        assert mean[f"{shape}_light"][0] > mean[f"{shape}_medium"][0] + 20
        assert mean[f"{shape}_medium"][0] > mean[f"{shape}_dark"][0] + 20
    for shape in ("triangle", "cross", "ellipse"):  # texture cue: contrast inside the mask
        assert mean[f"{shape}_striped"][1] > 2 * mean[f"{shape}_solid"][1]
        assert mean[f"{shape}_dotted"][1] > 2 * mean[f"{shape}_solid"][1]


def test_lvis_api_loads_and_evaluates(default):
    from lvis import LVIS

    paths, train, val = default
    assert len(LVIS(paths["train_json"]).get_img_ids()) == len(train["images"])
    preds = _gt_predictions(paths["val_json"])
    for iou_type in ("segm", "bbox"):
        res = _lvis_eval(paths["val_json"], preds, iou_type)
        for key in ("AP", "APr", "APc", "APf"):
            assert res[key] > 0.99, (iou_type, key, res[key])
    rng = np.random.default_rng(0)
    garbage = [
        {"image_id": p["image_id"], "category_id": int(rng.integers(1, 25)),
         "bbox": [float(v) for v in rng.uniform(0, 60, 4)], "score": float(rng.random())}
        for p in preds
    ]  # fmt: skip
    assert _lvis_eval(paths["val_json"], garbage, "bbox")["AP"] < 0.05


def test_confusing_rare_with_frequent_sibling_kills_apr(default):
    paths, train, _ = default
    cats = train["categories"]
    by_shape = defaultdict(list)
    for c in cats:
        by_shape[c["name"].split("_")[0]].append(c)
    relabel = {}
    for members in by_shape.values():
        head = max(members, key=lambda c: c["image_count"])
        relabel.update({c["id"]: head["id"] for c in members if c["frequency"] == "r"})
    res = _lvis_eval(paths["val_json"], _gt_predictions(paths["val_json"], relabel), "segm")
    assert res["APr"] < 0.05 and res["APc"] > 0.5


def test_lvis_frequency_rule():
    assert [lvis_frequency(n) for n in (1, 10, 11, 100, 101)] == ["r", "r", "c", "c", "f"]


def _ensure(root, queue):
    queue.put(embedded.ensure_embedded_lvis(root, **SMALL))


def test_ensure_is_safe_when_called_concurrently(tmp_path):
    root = str(tmp_path / "cache" / "emb")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ensure, args=(root, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert [queue.get(timeout=5), queue.get(timeout=5)] == [root, root]
    assert os.listdir(tmp_path / "cache") == ["emb"]  # no temporary folder left behind
    meta = _load(os.path.join(root, "meta.json"))
    assert meta["params"] == {**embedded.EMBEDDED_DEFAULTS, **SMALL, "imbalance": 2.0}
    stamp = os.stat(os.path.join(root, "lvis_embedded_train.json")).st_mtime_ns
    assert embedded.ensure_embedded_lvis(root, **SMALL) == root  # reused, not regenerated
    assert os.stat(os.path.join(root, "lvis_embedded_train.json")).st_mtime_ns == stamp


def test_ensure_regenerates_outdated_and_refuses_foreign_folders(tmp_path):
    root = str(tmp_path / "emb")
    embedded.ensure_embedded_lvis(root, **SMALL)
    before = _files(root)["lvis_embedded_train.json"]
    assert embedded.ensure_embedded_lvis(root, **{**SMALL, "seed": 1}) == root
    assert _load(os.path.join(root, "meta.json"))["params"]["seed"] == 1
    assert _files(root)["lvis_embedded_train.json"] != before
    assert os.listdir(tmp_path) == ["emb"]  # the outdated copy was removed
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "something.txt").write_text("not ours")
    with pytest.raises(RuntimeError, match="not an embedded dataset folder") as e:
        embedded.ensure_embedded_lvis(str(foreign), **SMALL)
    assert str(foreign) in str(e.value)
    (foreign / "meta.json").write_text('{"generator": "someone else"}')
    with pytest.raises(RuntimeError, match="not an embedded dataset folder"):
        embedded.ensure_embedded_lvis(str(foreign), **SMALL)
    assert sorted(os.listdir(foreign)) == ["meta.json", "something.txt"]
    assert sorted(os.listdir(tmp_path)) == ["emb", "foreign"]
    with pytest.raises(TypeError, match="bogus"):
        embedded.ensure_embedded_lvis(root, bogus=1)


def test_embedded_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LDA_EMBEDDED_ROOT", str(tmp_path / "x"))
    assert embedded.get_embedded_root() == str(tmp_path / "x")
    monkeypatch.delenv("LDA_EMBEDDED_ROOT")
    assert embedded.get_embedded_root().endswith(os.path.join("projects_lda", "embedded_lvis_v1"))


def test_cli(tmp_path, capsys):
    out = str(tmp_path / "cli")
    args = "--seed 5 --num-classes 6 --num-train-images 20 --num-val-images 6 --image-size 64"
    embedded.main(["--out", out, *args.split(), "--imbalance", "1.5", "--num-test-images", "5"])
    meta = _load(os.path.join(out, "meta.json"))
    assert meta["params"] == {"seed": 5, "num_classes": 6, "num_train_images": 20,
                              "num_val_images": 6, "num_test_images": 5, "imbalance": 1.5,
                              "image_size": 64, "federated": False}  # fmt: skip
    assert len(os.listdir(os.path.join(out, "train"))) == 20
    assert "lvis_embedded_val.json" in capsys.readouterr().out


def test_invalid_parameters(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=31)
    with pytest.raises(ValueError, match="do not fit"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=30, num_train_images=4)
