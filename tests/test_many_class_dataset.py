"""The many-class variant of the embedded dataset (projects_lda.worlds.many_class, generated through
projects_lda.worlds.embedded from 100 classes): LVIS v1's rare / common / frequent shape, attribute
classes in sibling groups, balanced val / test splits; its registered splits and configs; and
the small variant's class table and defaults, unchanged."""
import ast
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from projects_lda import get_project_cfg
from projects_lda.data import datasets as ds
from projects_lda.data import lvis_frequency
from projects_lda.worlds import embedded, many_class
from projects_lda.worlds.datasets import register_embedded_lvis
from projects_lda.worlds.embedded_common import rank_order

# The smallest many-class dataset: 100 classes, the fewest images that hold it, 96 px.
SMALL_MANY = dict(num_classes=100, image_size=96)
ATTRIBUTES = ("shape", "hue", "shade", "texture", "aspect")
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _load(path):
    with open(path) as f:
        return json.load(f)


def _splits(paths):
    return {s: _load(paths[f"{s}_json"]) for s in embedded.SPLITS}


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Generated through the command line, with the minimum image counts."""
    least = many_class.many_class_minimums(100)
    out = str(tmp_path_factory.mktemp("many"))
    args = ["--out", out, "--num-classes", "100", "--image-size", "96"]
    for key, value in least.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    paths = embedded.main(args)
    return paths, _splits(paths)


@pytest.fixture(scope="module")
def many_federated(tmp_path_factory):
    params = {**SMALL_MANY, **many_class.many_class_minimums(100, federated=True)}
    paths = embedded.generate_embedded_lvis(
        str(tmp_path_factory.mktemp("many_fed")), federated=True, seed=1, **params
    )
    return paths, _splits(paths)


def test_small_variant_is_unchanged():
    assert embedded.EMBEDDED_DEFAULTS == {
        "seed": 0, "num_classes": 24, "num_train_images": 400, "num_val_images": 120,
        "num_test_images": 343, "imbalance": 2.0, "image_size": 128, "federated": False,
    }  # fmt: skip
    assert embedded.FEDERATED_DEFAULTS == {
        **embedded.EMBEDDED_DEFAULTS, "seed": 1, "num_classes": 30, "imbalance": 1.8,
        "federated": True,
    }  # fmt: skip
    assert embedded.GENERATOR_VERSION == 3  # the defaults' folders are not regenerated
    for variant in ("exhaustive", "federated"):
        params = embedded.VARIANTS[variant]
        assert embedded.resolve_params(**params) == params  # the meta the folders hold
    assert embedded.resolve_params() == embedded.EMBEDDED_DEFAULTS
    names = [f"{shape}_{variant}" for _, shape, _, variant in embedded._class_table(30)]
    assert names == [
        "disc_light", "disc_medium", "disc_dark", "square_regular", "square_stretched",
        "square_elongated", "triangle_solid", "triangle_striped", "triangle_dotted",
        "ring_light", "ring_medium", "ring_dark", "cross_solid", "cross_striped", "cross_dotted",
        "star_light", "star_medium", "star_dark", "ellipse_solid", "ellipse_striped",
        "ellipse_dotted", "hexagon_regular", "hexagon_stretched", "hexagon_elongated",
        "pentagon_solid", "pentagon_striped", "pentagon_dotted", "arrow_light", "arrow_medium",
        "arrow_dark",
    ]  # fmt: skip
    assert [f"{s}_{v}" for _, s, _, v in embedded._class_table(24)] == names[:24]


def test_1203_classes_are_distinct_attribute_combinations_in_sibling_groups():
    table = many_class.many_class_table(1203)
    assert len(table) == 1203
    combos = [tuple(getattr(r, a) for a in ATTRIBUTES) for r in table]
    assert len(set(combos)) == 1203 and len({r.name for r in table}) == 1203
    for a in ATTRIBUTES:  # every value of every attribute is used, each by many classes
        counts = Counter(getattr(r, a) for r in table)
        assert len(counts) == len(many_class._MANY_ATTRIBUTES[a]) and min(counts.values()) >= 40
    groups = defaultdict(list)
    for r in table:
        groups[r.group].append(r)
    assert sorted(len(g) for g in groups.values()) == [3] * 401
    for members in groups.values():  # siblings share all attributes but the group's cue
        cue = members[0].cue
        assert all(r.cue == cue for r in members)
        for a in ATTRIBUTES:
            assert len({getattr(r, a) for r in members}) == (3 if a == cue else 1), members
    assert set(Counter(r.cue for r in table)) == set(ATTRIBUTES)
    # the table of fewer classes is a prefix of it
    assert many_class.many_class_table(300) == table[:300]


def test_error_analysis_groups_siblings_of_both_variants():
    # the benchmark's confusion analysis must group many-class siblings by the table (their
    # names share no common prefix) and keep the small variant's shape-prefix groups
    from projects_lda.evaluation.report import sibling_groups

    table = many_class.many_class_table(100)[:9]
    cats = [{"id": i + 1, "name": r.name} for i, r in enumerate(table)]
    cats += [{"id": 10, "name": "disc_light"}, {"id": 11, "name": "disc_dark"}]
    group_of = sibling_groups(cats)
    assert [group_of(i) for i in range(1, 10)] == [r.group for r in table] == [0, 0, 0, 1, 1, 1,
                                                                               2, 2, 2]
    assert group_of(10) == group_of(11) == "disc"


@pytest.mark.parametrize("n, rcf", [(1203, (337, 461, 405)), (300, (84, 115, 101)),
                                    (100, (28, 38, 34))])  # fmt: skip
def test_lvis_v1_frequency_proportions(n, rcf):
    assert tuple(many_class.many_class_frequency_counts(n).values()) == rcf
    counts = many_class.many_class_image_counts(n)
    assert len(counts) == n and (np.diff(counts) <= 0).all()  # by rank
    freq = Counter(lvis_frequency(int(k)) for k in counts)
    assert (freq["r"], freq["c"], freq["f"]) == rcf
    rare = counts[-rcf[0]:]
    assert rare.min() == 1 and rare.max() == 10
    assert counts.max() >= 100 * np.median(rare)  # images; instances: test below


def test_every_rare_class_has_a_frequent_sibling_at_1203():
    table = many_class.many_class_table(1203)
    for seed in (0, 1):
        order = rank_order(np.random.default_rng(seed), table)
        counts = many_class.many_class_image_counts(1203)
        freq = {c: lvis_frequency(int(counts[rank])) for rank, c in enumerate(order)}
        by_group = defaultdict(set)
        for c, r in enumerate(table):
            by_group[r.group].add(freq[c])
        assert all("f" in f for f in by_group.values())  # every group has a frequent head
        mixed = [f for f in by_group.values() if "r" in f]
        assert len(mixed) == 337  # one rare member per group at most, beside a frequent one


def test_many_class_dataset_has_lvis_shape(many):
    paths, data = many
    cats = data["train"]["categories"]
    assert [c["name"] for c in cats] == [r.name for r in many_class.many_class_table(100)]
    freq = Counter(c["frequency"] for c in cats)
    assert (freq["r"], freq["c"], freq["f"]) == (28, 38, 34)
    images = defaultdict(set)
    instances = Counter()
    for a in data["train"]["annotations"]:
        images[a["category_id"]].add(a["image_id"])
        instances[a["category_id"]] += 1
    for c in cats:  # the categories' counts are those of the file, by LVIS's rule
        assert c["image_count"] == len(images[c["id"]]) and c["frequency"] == lvis_frequency(
            c["image_count"]
        )
        assert c["instance_count"] == instances[c["id"]]
    rare = [c for c in cats if c["frequency"] == "r"]
    assert all(1 <= c["image_count"] <= 10 for c in rare)
    median_rare = np.median([c["instance_count"] for c in rare])
    assert max(c["instance_count"] for c in cats) >= 100 * median_rare
    # several instances of several classes per image
    per_image = Counter(a["image_id"] for a in data["train"]["annotations"])
    pairs = Counter((a["image_id"], a["category_id"]) for a in data["train"]["annotations"])
    n_images = len(data["train"]["images"])
    assert len(pairs) / n_images > 8 and len(per_image) == n_images
    assert max(per_image.values()) <= many_class._MANY_MAX_INSTANCES
    assert max(pairs.values()) == 3 and sum(v > 1 for v in pairs.values()) > 0.15 * len(pairs)
    # a rare class's group holds a frequent class
    group = {i + 1: r.group for i, r in enumerate(many_class.many_class_table(100))}
    freq_of_group = defaultdict(set)
    for c in cats:
        freq_of_group[group[c["id"]]].add(c["frequency"])
    assert all("f" in freq_of_group[group[c["id"]]] for c in rare)
    meta = _load(paths["meta"])
    assert meta["categories_per_frequency"] == {"r": 28, "c": 38, "f": 34}


def test_many_class_val_and_test_are_balanced_and_exhaustive(many):
    _, data = many
    for split, per_class in (("val", 10), ("test", 20)):
        counts = Counter(a["category_id"] for a in data[split]["annotations"])
        assert sorted(set(counts.values())) == [per_class] and len(counts) == 100
        for img in data[split]["images"]:
            present = {a["category_id"] for a in data[split]["annotations"]
                       if a["image_id"] == img["id"]}  # fmt: skip
            assert set(img["neg_category_ids"]) == set(range(1, 101)) - present
            assert img["not_exhaustive_category_ids"] == []
    ids = [set(i["id"] for i in data[s]["images"]) for s in embedded.SPLITS]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])


def test_many_class_masks_are_disjoint_visible_pixels(many):
    paths, data = many
    anns = defaultdict(list)
    for a in data["train"]["annotations"]:
        anns[a["image_id"]].append(a)
    for img in data["train"]["images"][:40]:
        union = np.zeros((96, 96), np.int32)
        for a in anns[img["id"]]:
            m = mask_util.decode(mask_util.frPyObjects(a["segmentation"], 96, 96))[:, :, 0]
            assert m.sum() == a["area"] > 0
            union += m
        assert union.max() == 1  # objects never overlap
        file = img["coco_url"].split("/")[-1]
        assert os.path.isfile(os.path.join(paths["train_images"], file))


def test_many_class_federated(many_federated):
    _, data = many_federated
    cats = data["train"]["categories"]
    freq = Counter(c["frequency"] for c in cats)
    assert (freq["r"], freq["c"], freq["f"]) == (28, 38, 34)  # labelled images, LVIS's rule
    assert min(c["image_count"] for c in cats) == 1
    for split in embedded.SPLITS:
        images = data[split]["images"]
        negatives = np.mean([len(i["neg_category_ids"]) for i in images])
        assert 2 < negatives < 10  # a sample of the ~90 absent categories, LVIS-like
        assert sum(bool(i["not_exhaustive_category_ids"]) for i in images) > 0.2 * len(images)
    counts = Counter(a["category_id"] for a in data["test"]["annotations"])
    assert len(counts) == 100 and min(counts.values()) >= 8  # 20 images a class, federated


def test_impossible_requests_name_the_parameter(tmp_path):
    least = many_class.many_class_minimums(1203)["num_train_images"]
    with pytest.raises(ValueError, match=rf"num_train_images=400 .*at least {least}"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=1203, num_train_images=400)
    with pytest.raises(ValueError, match="num_test_images"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=300, num_test_images=100)
    with pytest.raises(ValueError, match="num_classes"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=50)
    with pytest.raises(ValueError, match="num_classes"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=many_class.MANY_CLASS_MAX + 1)
    with pytest.raises(ValueError, match="image_size"):
        embedded.generate_embedded_lvis(str(tmp_path), num_classes=100, image_size=64)
    assert not os.listdir(tmp_path)  # nothing written


def test_many_class_defaults_and_variants():
    params = embedded.resolve_params(num_classes=1203)
    assert params == many_class.many_class_defaults(1203) == embedded.VARIANTS["many_class_1203"]
    least = many_class.many_class_minimums(1203)
    assert all(params[k] >= v for k, v in least.items())
    assert (params["num_train_images"], params["image_size"]) == (9100, 160)
    # the benchmark's variant: 300 classes, exhaustive and federated
    bench = embedded.VARIANTS["many_class"]
    assert bench == many_class.many_class_defaults(300) and bench["num_train_images"] == 2500
    fed = embedded.resolve_params(**embedded.VARIANTS["many_class_federated"])
    assert fed["federated"] and fed["num_classes"] == 300
    assert fed["num_train_images"] > bench["num_train_images"]
    assert embedded.get_embedded_root("many_class").endswith("_many_class")
    assert embedded.get_embedded_root("many_class_1203").endswith("_many_class_1203")
    # the 1,203-class study's: federated, about 11 classes a training image (at most 12)
    fed1203 = embedded.resolve_params(**embedded.VARIANTS["many_class_1203_federated"])
    least = many_class.many_class_minimums(1203, federated=True)
    assert fed1203["federated"] and all(fed1203[k] >= v for k, v in least.items())
    assert fed1203["num_train_images"] < 1.1 * least["num_train_images"]
    # explicit values are kept; None takes the default of the class count
    assert embedded.resolve_params(num_classes=300, num_train_images=None)["num_train_images"] == (
        many_class.many_class_defaults(300)["num_train_images"]
    )


def test_many_class_module_is_split_from_the_small_variant_without_a_cycle():
    for name in many_class.__all__:  # the public names stay importable from embedded
        if name in embedded.__all__:
            assert getattr(embedded, name) is getattr(many_class, name)
    tree = ast.parse(Path(many_class.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.split(".")[-1] == "embedded"}, imported


def test_many_class_splits_registered_on_import_without_generating():
    for prefix, variant in (("lvis_embedded_many", "many_class"),
                            ("lvis_embedded_many_fed", "many_class_federated"),
                            ("lvis_embedded_many1203", "many_class_1203"),
                            ("lvis_embedded_many1203_fed",
                             "many_class_1203_federated")):  # fmt: skip
        for split in embedded.SPLITS:
            name = f"{prefix}_{split}"
            assert name in DatasetCatalog.list() and ds._REGISTERED[name][2] == variant
            assert MetadataCatalog.get(name).evaluator_type == "lvis"
            if name in ds._LAZY:  # not used yet in this process: nothing read or generated
                assert "thing_classes" not in MetadataCatalog.get(name).__dict__


def test_many_class_registration_resolves_to_the_variant(many, tmp_path, monkeypatch):
    """The variant's registration generates (here: finds) its folder on first use; with the
    100-class dataset of the fixture standing in for the 300-class one."""
    paths, _ = many
    with open(paths["meta"]) as f:
        params = json.load(f)["params"]
    monkeypatch.setitem(embedded.VARIANTS, "many_class", params)
    monkeypatch.setenv(embedded.ROOT_ENV, str(tmp_path / "emb"))
    os.symlink(paths["root"], str(tmp_path / "emb_many_class"))  # get_embedded_root's folder
    prefix = "test_many_class_registration"
    register_embedded_lvis(prefix=prefix, variant="many_class")
    try:
        meta = MetadataCatalog.get(f"{prefix}_train")
        assert len(meta.thing_classes) == 100 and meta.json_file.startswith(str(tmp_path))
        assert len(DatasetCatalog.get(f"{prefix}_test")) == params["num_test_images"]
    finally:
        for split in embedded.SPLITS:
            name = f"{prefix}_{split}"
            DatasetCatalog.remove(name)
            MetadataCatalog.pop(name, None)
            ds._REGISTERED.pop(name, None)
            ds._LAZY.pop(name, None)
    assert sorted(os.listdir(tmp_path)) == ["emb_many_class"]  # nothing else generated


@pytest.mark.parametrize("config, variant", [
    (f"EmbeddedMany/{m}mask_rcnn_R_18_FPN_cpu_embeddedmany.yaml", "many_class")
    for m in ("", "lda_", "seesaw_", "eqlv2_", "fedloss_", "balanced_softmax_")
] + [(f"EmbeddedMany1203/{m}mask_rcnn_R_18_FPN_cpu_embeddedmany1203.yaml",
       "many_class_1203_federated") for m in ("", "lda_")])
def test_configs_match_the_variant(config, variant):
    cfg = get_project_cfg()
    cfg.merge_from_file(str(CONFIGS / config))
    params = embedded.VARIANTS[variant]
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == params["num_classes"]
    prefix = {"many_class": "lvis_embedded_many",
              "many_class_1203_federated": "lvis_embedded_many1203_fed"}
    assert cfg.DATASETS.TRAIN == (f"{prefix[variant]}_train",)
    assert cfg.DATASETS.TEST == (f"{prefix[variant]}_test",)
    for name in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST:
        assert ds._REGISTERED[name] == ("embedded", None, variant)
    assert cfg.INPUT.MIN_SIZE_TEST == params["image_size"] in cfg.INPUT.MIN_SIZE_TRAIN
    # LVIS's cap of 300 detections for its 1,203 classes, the same share of the classes at 300
    cap = cfg.TEST.DETECTIONS_PER_IMAGE
    assert (cap == cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE
            == {1203: 300, 300: 100}[params["num_classes"]])
    assert cfg.MODEL.ROI_MASK_HEAD.NAME == "SelectedClassMaskHead"
    # repeat-factor sampling: LVIS's threshold scaled to the training images (100 images)
    assert cfg.DATALOADER.REPEAT_THRESHOLD * params["num_train_images"] == pytest.approx(100, 0.01)
    # lr drops at 8/12 and 11/12 of the schedule, as in the paper's 12 epochs
    assert cfg.SOLVER.STEPS == tuple(int(e * cfg.SOLVER.MAX_ITER / 12 + 0.5) for e in (8, 11))
    if variant == "many_class_1203_federated":  # LVIS's annotation, about 8 passes
        assert params["federated"] and params["num_classes"] == 1203
        passes = cfg.SOLVER.MAX_ITER * cfg.SOLVER.IMS_PER_BATCH / params["num_train_images"]
        assert 8 <= passes <= 9
