"""The embedded dataset's val / test splits and its federated (LVIS-annotated) variant."""
import hashlib
import json
import os
from collections import Counter, defaultdict

import numpy as np
import pytest

from projects_lda.worlds import embedded, federated

SMALL = dict(num_classes=6, num_train_images=24, num_val_images=8, image_size=64)


def _load(path):
    with open(path) as f:
        return json.load(f)


def _digests(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.md5(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def default(embedded_default):
    paths = embedded_default
    return paths, {s: _load(paths[f"{s}_json"]) for s in embedded.SPLITS}


def test_splits_disjoint_balanced_and_sized(default):
    paths, data = default
    ids = {s: {img["id"] for img in d["images"]} for s, d in data.items()}
    assert [len(ids[s]) for s in embedded.SPLITS] == [400, 120, 343]
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])
    for s, d in data.items():  # each split's files are in its own folder
        assert {img["coco_url"].split("/")[-2] for img in d["images"]} == {s}
        assert len(os.listdir(paths[f"{s}_images"])) == len(d["images"])
    # no image drawn twice: val and test pixels differ
    assert not set(_digests(paths["val_images"]).values()) & set(
        _digests(paths["test_images"]).values()
    )
    ann_ids = [a["id"] for d in data.values() for a in d["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))
    for split, per_class in (("val", 14), ("test", 40)):  # balanced: every class alike
        counts = Counter(a["category_id"] for a in data[split]["annotations"])
        assert sorted(counts) == list(range(1, 25))
        assert set(counts.values()) == {per_class}, (split, counts)
        assert data[split]["categories"] == data["train"]["categories"]  # training frequencies
        for img in data[split]["images"]:
            assert img["not_exhaustive_category_ids"] == []
            present = {a["category_id"] for a in data[split]["annotations"]
                       if a["image_id"] == img["id"]}  # fmt: skip
            assert sorted(img["neg_category_ids"]) == sorted(set(range(1, 25)) - present)


def test_test_split_leaves_train_and_val_unchanged(tmp_path):
    a = embedded.generate_embedded_lvis(str(tmp_path / "a"), num_test_images=4, **SMALL)
    b = embedded.generate_embedded_lvis(str(tmp_path / "b"), num_test_images=9, **SMALL)
    for s in ("train", "val"):
        assert _digests(a[f"{s}_images"]) == _digests(b[f"{s}_images"])
        with open(a[f"{s}_json"], "rb") as fa, open(b[f"{s}_json"], "rb") as fb:
            assert fa.read() == fb.read()
    assert len(_load(a["test_json"])["images"]) == 4
    assert len(_load(b["test_json"])["images"]) == 9


def _exhaustive_split(num_images, num_classes, rng):
    """Image records and annotations of an exhaustively annotated split (2-3 classes per image,
    1-3 instances each)."""
    images, anns = [], []
    for i in range(1, num_images + 1):
        present = rng.choice(num_classes, size=int(rng.integers(2, 4)), replace=False) + 1
        for c in present:
            for _ in range(int(rng.integers(1, 4))):
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c)})
        images.append({"id": i, "not_exhaustive_category_ids": [],
                       "neg_category_ids": sorted(set(range(1, num_classes + 1)) - set(present))})
    return images, anns


def test_federate_rules_and_rates():
    rng = np.random.default_rng(0)
    images, anns = _exhaustive_split(3000, 30, rng)
    fed_images, fed_anns = federated.federate(np.random.default_rng(1), images, anns,
                                              num_classes=30)
    assert [i["id"] for i in fed_images] == [i["id"] for i in images]
    assert {a["id"] for a in fed_anns} <= {a["id"] for a in anns}
    full, kept = defaultdict(Counter), defaultdict(Counter)
    for a in anns:
        full[a["image_id"]][a["category_id"]] += 1
    for a in fed_anns:
        kept[a["image_id"]][a["category_id"]] += 1
    pairs = unchecked = multi = not_exhaustive = absent = neg = 0
    for img in fed_images:
        present, labelled = full[img["id"]], kept[img["id"]]
        assert not set(img["neg_category_ids"]) & set(present)  # negatives are truly absent
        assert set(img["not_exhaustive_category_ids"]) <= set(labelled)
        for c, n in present.items():
            pairs += 1
            multi += n > 1
            if c not in labelled:  # unchecked: every instance unlabelled
                unchecked += 1
            elif c in img["not_exhaustive_category_ids"]:
                not_exhaustive += 1
                assert 1 <= labelled[c] < n  # partly labelled
            else:
                assert labelled[c] == n  # exhaustive
        absent += 30 - len(present)
        neg += len(img["neg_category_ids"])
    # the stated rates (binomial standard errors are below 0.01 at these counts)
    assert abs(unchecked / pairs - federated.UNCHECKED_PROB) < 0.02
    assert abs(neg / absent - federated.NEG_SAMPLE_PROB) < 0.01
    expected = federated.NOT_EXHAUSTIVE_PROB * (1 - federated.UNCHECKED_PROB)
    assert abs(not_exhaustive / multi - expected) < 0.03


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    params = dict(embedded.FEDERATED_DEFAULTS, num_train_images=60, num_val_images=40,
                  num_test_images=12, image_size=64)  # fmt: skip
    return embedded.generate_embedded_lvis(str(tmp_path_factory.mktemp("fed")), **params)


def test_federated_variant_files(fed):
    meta = _load(fed["meta"])
    assert meta["params"]["federated"] and meta["params"]["num_classes"] == 30
    for s in embedded.SPLITS:
        data = _load(fed[f"{s}_json"])
        negs = [len(img["neg_category_ids"]) for img in data["images"]]
        present = defaultdict(set)
        for a in data["annotations"]:
            present[a["image_id"]].add(a["category_id"])
        for img in data["images"]:
            assert not set(img["neg_category_ids"]) & present[img["id"]]
            assert set(img["not_exhaustive_category_ids"]) <= present[img["id"]]
        # a sample of the absent categories, not all of them
        assert 0 < np.mean(negs) < 0.5 * (30 - 3), (s, np.mean(negs))
    train = _load(fed["train_json"])
    counts = Counter(a["category_id"] for a in train["annotations"])
    assert [c["instance_count"] for c in train["categories"]] == [counts[i] for i in range(1, 31)]


def _lvis_ap(gt_json, predictions):
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(gt_json)
    ev = LVISEval(gt, LVISResults(gt, predictions), "bbox")
    ev.run()
    return ev.get_results()["AP"]


def test_lvis_evaluation_rules_apply_to_federated_file(fed):
    """A confident false positive costs AP only for a category the image was checked for."""
    data = _load(fed["val_json"])
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 0.9} for a in data["annotations"]]  # fmt: skip
    assert _lvis_ap(fed["val_json"], perfect) == pytest.approx(1.0)
    labelled = defaultdict(set)
    for a in data["annotations"]:
        labelled[a["image_id"]].add(a["category_id"])
    gt_cats = {a["category_id"] for a in data["annotations"]}
    img = next(i for i in data["images"] if i["neg_category_ids"])
    checked = labelled[img["id"]] | set(img["neg_category_ids"])
    unchecked = min(gt_cats - checked)
    negative = min(set(img["neg_category_ids"]) & gt_cats)
    wrong_box = [1.0, 1.0, 5.0, 5.0]  # overlaps no object of the 64 px image's annotations

    def with_fp(cat, image_id=img["id"]):
        fp = {"image_id": image_id, "category_id": cat, "bbox": wrong_box, "score": 1.0}
        return _lvis_ap(fed["val_json"], perfect + [fp])

    assert with_fp(unchecked) == pytest.approx(1.0)  # ignored
    assert with_fp(negative) < 0.999  # verified absent: a false positive
    ne_img = next((i for i in data["images"] if i["not_exhaustive_category_ids"]), None)
    assert ne_img is not None, "the federated val split has no not-exhaustive category"
    cat = ne_img["not_exhaustive_category_ids"][0]
    assert with_fp(cat, ne_img["id"]) == pytest.approx(1.0)  # may be an unlabelled instance
