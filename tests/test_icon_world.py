"""The icon world's generator (projects_lda/worlds/icons.py): determinism, masks against the
icons' alpha, LVIS's frequency rule, federated labels, and a tiny setting that trains and
evaluates."""
import filecmp
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_util

from projects_lda.worlds import icon_render, icons

TINY = dict(seed=5, num_classes=12, num_train_images=60, num_val_images=8, num_test_images=8,
            image_size=96, classes_per_image=3.0)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("icons") / "fed")
    icons.generate_icon_lvis(out, federated=True, **TINY)
    return out


def _load(root, split):
    with open(os.path.join(root, icons.SPLIT_JSON[split])) as f:
        return json.load(f)


def test_same_seed_same_files(tiny_world, tmp_path):
    again = str(tmp_path / "again")
    icons.generate_icon_lvis(again, federated=True, **TINY)
    for split in icons.SPLITS:
        assert filecmp.cmp(os.path.join(tiny_world, icons.SPLIT_JSON[split]),
                           os.path.join(again, icons.SPLIT_JSON[split]), shallow=False)
        files = sorted(os.listdir(os.path.join(tiny_world, split)))
        assert files == sorted(os.listdir(os.path.join(again, split)))
        _, mismatch, errors = filecmp.cmpfiles(os.path.join(tiny_world, split),
                                               os.path.join(again, split), files, shallow=False)
        assert mismatch == [] and errors == []
    other = str(tmp_path / "other")
    icons.generate_icon_lvis(other, federated=True, **{**TINY, "seed": 6})
    assert not filecmp.cmp(os.path.join(tiny_world, icons.SPLIT_JSON["train"]),
                           os.path.join(other, icons.SPLIT_JSON["train"]), shallow=False)


def _pasted(alpha, y, x, shape):
    out = np.zeros(shape, bool)
    h, w = alpha.shape
    ys, xs = slice(max(0, y), min(shape[0], y + h)), slice(max(0, x), min(shape[1], x + w))
    out[ys, xs] = alpha[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x]
    return out


def test_unoccluded_mask_is_the_icons_alpha():
    inst = np.zeros((10, 12, 4), np.uint8)
    inst[2:8, 3:9, :3] = 200
    inst[2:8, 3:9, 3] = 255
    inst[1, 3:9, 3] = 100  # below the alpha threshold: drawn half-transparent, not in the mask
    alpha = inst[:, :, 3] >= icon_render.ALPHA_THRESHOLD
    for seed in range(5):  # some placements cut the instance at the border
        img = np.zeros((40, 40, 3), np.uint8)
        (mask,) = icon_render.compose(np.random.default_rng(seed), img, [inst], [True])
        placements = [(y, x) for y in range(-10, 40) for x in range(-12, 40)
                      if (mask == _pasted(alpha, y, x, mask.shape)).all()]
        assert len(placements) >= 1 and mask.sum() > 0
        assert (img[mask] == 200).all()


def test_later_instance_hides_the_earlier_ones_pixels():
    rng = np.random.default_rng(1)
    big = np.full((20, 20, 4), 255, np.uint8)
    small = np.full((6, 6, 4), 255, np.uint8)
    img = np.zeros((20, 20, 3), np.uint8)
    first, second = icon_render.compose(rng, img, [big, small], [True, True])
    # the big one covers the whole image: the small one lies on it and is cut out of its mask
    assert second.sum() > 0
    assert (first == ~second).all()
    assert first.sum() >= icon_render.MIN_VISIBLE * 400


def test_generated_masks_are_alpha_less_later_instances(tiny_world):
    data = _load(tiny_world, "val")
    for ann in data["annotations"]:
        m = mask_util.decode(ann["segmentation"]).astype(bool)
        assert m.sum() == ann["area"] > 0
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)


def test_image_count_plan_follows_lvis_rule_at_1203_classes():
    classes = icons.select_classes(1203)
    plan = icons.image_count_plan(classes, 6000, 5.0, np.random.default_rng(0))
    counts, freq = plan["counts"], np.array(plan["frequency"])
    # LVIS v1's 337 / 461 / 405 rare / common / frequent classes, by the rule on the counts
    assert [(freq == g).sum() for g in "rcf"] == [337, 461, 405]
    rule = np.where(counts <= plan["rare_max"], "r",
                    np.where(counts <= plan["common_max"], "c", "f"))
    assert (rule == freq).all()
    assert counts.sum() == pytest.approx(5.0 * 6000, rel=1e-3)
    # at 1,203 classes an LVIS-named class is mapped from its own LVIS count
    lvis = icons.lvis_v1_image_counts()
    named = [k for k, c in enumerate(classes) if c.lvis_id]
    assert len(named) > 100
    assert all(plan["lvis_counts"][k] == lvis[classes[k].lvis_id - 1] for k in named)
    assert sorted(plan["lvis_counts"]) == sorted(lvis)


def test_fewer_classes_keep_the_named_classes_order():
    classes = icons.select_classes(40)
    plan = icons.image_count_plan(classes, 800, 4.0, np.random.default_rng(0))
    lvis = icons.lvis_v1_image_counts()
    pairs = sorted(((lvis[c.lvis_id - 1], n) for c, n in zip(classes, plan["counts"])),
                   key=lambda t: (-t[0], -t[1]))
    assert all(a[1] >= b[1] for a, b in zip(pairs, pairs[1:]))
    freq = np.array(plan["frequency"])
    # the 40 evenly spaced ranks of 1,203: 11 of the 337 rare, 16 of the 461 common, 13 of 405
    assert [(freq == g).sum() for g in "rcf"] == [11, 16, 13]


def test_written_frequency_is_lvis_rule_with_mapped_thresholds(tiny_world):
    with open(os.path.join(tiny_world, icons.META_FILE)) as f:
        meta = json.load(f)
    train = _load(tiny_world, "train")
    images = {}
    for a in train["annotations"]:
        images.setdefault(a["category_id"], set()).add(a["image_id"])
    for cat in train["categories"]:
        n = len(images[cat["id"]])
        assert cat["image_count"] == n >= 1
        expected = "r" if n <= meta["rare_max"] else ("c" if n <= meta["common_max"] else "f")
        assert cat["frequency"] == expected
    for split in ("val", "test"):  # evaluation groups APr/APc/APf by these
        assert _load(tiny_world, split)["categories"] == train["categories"]


def test_federated_labels(tiny_world):
    train = _load(tiny_world, "train")
    ids = {c["id"] for c in train["categories"]}
    labelled = {}
    for a in train["annotations"]:
        labelled.setdefault(a["image_id"], set()).add(a["category_id"])
    for img in train["images"]:
        negs = set(img["neg_category_ids"])
        assert negs <= ids and not negs & labelled.get(img["id"], set())
        assert set(img["not_exhaustive_category_ids"]) <= labelled.get(img["id"], set())
    assert sum(len(i["neg_category_ids"]) for i in train["images"]) > 0


def test_lvis_names_and_errors():
    classes = icons.select_classes(12)
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    names = {c["id"]: c["name"] for c in LVIS_CATEGORIES}
    assert all(c.lvis_id and c.name == names[c.lvis_id] for c in classes)
    with pytest.raises(ValueError, match="num_classes must be in"):
        icons.select_classes(0)
    with pytest.raises(ValueError, match="cannot fill 10 training images"):
        icons.image_count_plan(classes, 10, 200.0, np.random.default_rng(0))


def test_tiny_setting_trains_and_evaluates(tiny_world, tmp_path):
    import train_net
    from detectron2.data import DatasetCatalog

    from projects_lda.data import register_lvis_format
    from conftest import ROOT, make_train_args

    for split in ("train", "val"):
        name = f"tiny_icons_{split}"
        if name not in DatasetCatalog.list():
            register_lvis_format(name, os.path.join(tiny_world, icons.SPLIT_JSON[split]),
                                 tiny_world)
    args = make_train_args(
        tmp_path / "run", "DATASETS.TRAIN", "('tiny_icons_train',)", "DATASETS.TEST",
        "('tiny_icons_val',)", "MODEL.ROI_HEADS.NUM_CLASSES", "12", "SOLVER.MAX_ITER", "2",
        config=ROOT / "configs/IconsSmall/lda_mask_rcnn_R_18_FPN_cpu_iconssmall.yaml")
    results = train_net.main(args)
    for task in ("bbox", "segm"):
        assert set(results[task]) >= {"AP", "APr", "APc", "APf"}  # one test set: not keyed
        assert np.isfinite(results[task]["AP"])


def test_ensure_keeps_its_folder_and_refuses_a_foreign_one(tiny_world, tmp_path):
    train_json = os.path.join(tiny_world, icons.SPLIT_JSON["train"])
    before = os.stat(train_json).st_mtime_ns
    assert icons.ensure_icon_lvis(tiny_world, federated=True, **TINY) == tiny_world
    assert os.stat(train_json).st_mtime_ns == before  # up to date: not generated again
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="is not an icon world folder"):
        icons.ensure_icon_lvis(str(foreign), **TINY)
    assert (foreign / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match=r"unknown icon world parameters \['classes'\]"):
        icons.ensure_icon_lvis(str(tmp_path / "new"), classes=3)


def test_lvis_image_counts_give_lvis_groups():
    """The committed counts are LVIS v1's: LVIS's rule on them gives every category's group as
    detectron2's category list has it (and detectron2 main's own list equals them)."""
    from detectron2.data.datasets.lvis_v1_categories import LVIS_CATEGORIES

    counts = icons.lvis_v1_image_counts()
    assert len(counts) == 1203 and counts.min() == 1 and counts.max() == 1977
    for cat in LVIS_CATEGORIES:
        n = counts[cat["id"] - 1]
        assert cat["frequency"] == ("r" if n <= 10 else "c" if n <= 100 else "f"), cat["name"]
    try:
        from detectron2.data.datasets.lvis_v1_category_image_count import (
            LVIS_CATEGORY_IMAGE_COUNT,
        )
    except ImportError:  # detectron2 0.6 has no such list
        return
    assert {c["id"]: c["image_count"] for c in LVIS_CATEGORY_IMAGE_COUNT} == {
        i + 1: int(n) for i, n in enumerate(counts)}
