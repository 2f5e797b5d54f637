"""
A user's own dataset, end to end on the CPU: COCO-format copies of the tiny embedded dataset
as labelling tools write them (sparse category ids, ``file_name`` only, polygons, compressed and
uncompressed RLE, crowd regions, no counts or frequencies; and a box-only copy) load as
detectron2's ``load_coco_json`` loads them, train a few iterations, evaluate with APr/APc/APf
and write the evaluation report; the evaluator equals pycocotools' COCOeval on an exhaustive
file; bad files get errors naming the file, the id and the field.
"""
import contextlib
import copy
import csv
import io
import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from projects_lda.data import datasets as ds

SPARSE = 2  # file category id = SPARSE * embedded id (2, 4, ..., 12: COCO-like gaps)


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE of a binary (H, W) mask: column-major run lengths, 0s first."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def coco_format_copy(lvis_json, out_json, *, masks=True, crowd_every=7):
    """
    The LVIS-format file rewritten the way COCO-format files come: sparse category ids in
    reverse order, ``file_name`` instead of ``coco_url``, no federated lists, no counts or
    frequencies; every 3rd mask compressed RLE, every 5th uncompressed RLE, every
    ``crowd_every``-th annotation a crowd region (uncompressed RLE, as COCO's); ``masks=False``
    drops every segmentation (a box-only file). Returns the new content.
    """
    from pycocotools import mask as mask_util

    with open(lvis_json) as f:
        data = json.load(f)
    size = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for img in data["images"]:
        img["file_name"] = "/".join(img.pop("coco_url").split("/")[-2:])
        img.pop("neg_category_ids", None)
        img.pop("not_exhaustive_category_ids", None)
    data["categories"] = [
        {"id": SPARSE * c["id"], "name": c["name"], "supercategory": c["name"].split("_")[0]}
        for c in reversed(data["categories"])]
    for i, ann in enumerate(data["annotations"]):
        ann["category_id"] *= SPARSE
        ann["iscrowd"] = int(crowd_every > 0 and i % crowd_every == crowd_every - 1)
        if not masks:
            del ann["segmentation"]
            continue
        h, w = size[ann["image_id"]]
        if ann["iscrowd"] or i % 5 == 4:
            rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], h, w))
            ann["segmentation"] = _uncompressed_rle(mask_util.decode(rle))
        elif i % 3 == 2:
            rle = mask_util.merge(mask_util.frPyObjects(ann["segmentation"], h, w))
            ann["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
    with open(out_json, "w") as f:
        json.dump(data, f)
    return data


@pytest.fixture(scope="module")
def own_data(tiny_dataset, tmp_path_factory):
    """COCO-format copies of the tiny dataset's train and val splits (masks and box-only),
    registered as ``own_{train,val}`` and ``own_box_{train,val}``."""
    folder = tmp_path_factory.mktemp("own_data")
    root = str(tiny_dataset["root"]) + "/"
    out = {"root": root}
    for prefix, masks in (("own", True), ("own_box", False)):
        for split in ("train", "val"):
            path = str(folder / f"{prefix}_{split}.json")
            out[f"{prefix}_{split}"] = coco_format_copy(tiny_dataset[f"{split}_json"], path,
                                                        masks=masks)
            out[f"{prefix}_{split}_json"] = path
            name = f"{prefix}_{split}"
            if name not in DatasetCatalog.list():
                ds.register_lvis_format(name, path, root)
    return out


def test_records_are_load_coco_jsons(own_data):
    """The single-parse loader makes detectron2's load_coco_json records (sparse ids mapped in
    id order, iscrowd kept, uncompressed RLE compressed), and the metadata map."""
    from detectron2.data.datasets import load_coco_json

    ours = DatasetCatalog.get("own_train")
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = load_coco_json(own_data["own_train_json"], own_data["root"], "own_ref_train")
    assert ours == theirs
    meta = MetadataCatalog.get("own_train")
    assert meta.thing_dataset_id_to_contiguous_id == \
        MetadataCatalog.get("own_ref_train").thing_dataset_id_to_contiguous_id == \
        {SPARSE * (i + 1): i for i in range(6)}
    assert meta.federated is False and meta.has_masks is True and meta.has_rle_masks is True
    # counts and r/c/f computed from the non-crowd annotations (LVIS's rule)
    anns = [a for a in own_data["own_train"]["annotations"] if not a["iscrowd"]]
    images = [len({a["image_id"] for a in anns if a["category_id"] == SPARSE * (k + 1)})
              for k in range(6)]
    assert [c["image_count"] for c in meta.class_image_count] == images
    assert any(a["iscrowd"] for d in ours for a in d["annotations"])


def test_box_only_file_under_a_mask_config_fails_before_training(own_data, train_args, tmp_path):
    import train_net

    with pytest.raises(ValueError, match="set MODEL.MASK_ON False") as e:
        train_net.main(train_args(tmp_path, "DATASETS.TRAIN", "('own_box_train',)",
                                  "SOLVER.MAX_ITER", "1"))
    assert own_data["own_box_train_json"] in str(e.value)
    assert not (tmp_path / "model_final.pth").exists()


def test_rle_masks_and_class_count_are_checked_before_training(own_data, train_args, tmp_path):
    import train_net

    with pytest.raises(ValueError, match="set INPUT.MASK_FORMAT bitmask"):
        train_net.main(train_args(tmp_path, "DATASETS.TRAIN", "('own_train',)",
                                  "SOLVER.MAX_ITER", "1"))
    with pytest.raises(ValueError, match="has 6 categories, but MODEL.ROI_HEADS.NUM_CLASSES is "
                       "12: set MODEL.ROI_HEADS.NUM_CLASSES 6"):
        train_net.main(train_args(tmp_path, "DATASETS.TRAIN", "('own_box_train',)",
                                  "MODEL.MASK_ON", "False", "MODEL.ROI_HEADS.NUM_CLASSES", "12"))


def test_coco_format_trains_evaluates_and_reports(own_data, train_args, tmp_path):
    """Masks (polygons + RLE + crowd), sparse ids: trains, evaluates with APr/APc/APf (r/c/f from
    the training split), writes the results with the file's ids and the report."""
    import train_net

    res = train_net.main(train_args(
        tmp_path, "DATASETS.TRAIN", "('own_train',)", "DATASETS.TEST", "('own_val',)",
        "INPUT.MASK_FORMAT", "bitmask", "SOLVER.MAX_ITER", "2", "TEST.LVIS_EVAL.REPORT", "True"))
    assert set(res) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert {"APr", "APc", "APf"} <= set(res[task])
    out = tmp_path / "inference" / "own_val"
    rows = json.loads((out / "lvis_instances_results.json").read_text())
    assert rows and {r["category_id"] for r in rows} <= {SPARSE * (k + 1) for k in range(6)}
    with open(out / "report" / "per_class.csv") as f:
        table = list(csv.DictReader(f))
    train_meta = MetadataCatalog.get("own_train")
    assert [int(r["id"]) for r in table] == [SPARSE * (k + 1) for k in range(6)]
    assert [r["group"] for r in table] == train_meta.class_frequency
    assert [int(r["train_images"]) for r in table] == \
        [c["image_count"] for c in train_meta.class_image_count]
    report = json.loads((out / "report" / "report.json").read_text())
    # the report's AP (a second evaluation from the saved results) is the evaluator's
    for task in ("bbox", "segm"):
        assert report["tasks"][task]["summary"]["AP"] == pytest.approx(
            res[task]["AP"], abs=1e-6)
        assert report["tasks"][task]["group_confusions"] is not None  # supercategory groups
    assert "TIDE" in (out / "report" / "report.md").read_text()
    # the same report later from the run's saved results
    from projects_lda.evaluation.report import main as eval_report

    again = eval_report(["--run", str(tmp_path), "--out", str(tmp_path / "again")])["own_val"]
    assert again["classes"] == report["classes"]
    assert again["tasks"]["segm"]["tide"] == report["tasks"]["segm"]["tide"]


def test_dataset_report(own_data, tmp_path):
    """The numbers of tools/inspect_dataset.py on a training file lacking one class (the val
    split has it), against what the records say and detectron2's repeat factors."""
    from detectron2.data.samplers import RepeatFactorTrainingSampler

    from projects_lda.app.dataset_report import main as inspect

    data = copy.deepcopy(own_data["own_train"])
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 12]
    path = tmp_path / "train_without_12.json"
    path.write_text(json.dumps(data))
    r = inspect(["--json", str(path), "--image-root", own_data["root"], "--eval-json",
                 own_data["own_val_json"], "--thresholds", "0.1", "0.5", "--out",
                 str(tmp_path / "report")])
    anns = data["annotations"]
    assert r["instances"] == sum(1 for a in anns if not a["iscrowd"])
    assert r["crowd_regions"] == sum(1 for a in anns if a["iscrowd"])
    counts = [len({a["image_id"] for a in anns if a["category_id"] == SPARSE * (k + 1)
                   and not a["iscrowd"]}) for k in range(6)]
    assert r["image_counts"] == counts and counts[5] == 0
    assert r["images_per_class"] == {"min": 0, "median": float(np.median(counts)),
                                     "max": max(counts)}
    assert r["classes_without_training_images"] == [data["categories"][0]["name"]]
    assert r["eval_splits"]["inspect_dataset_eval0"]["absent_from_training"] == \
        [data["categories"][0]["name"]]
    records = [d for d in DatasetCatalog.get("inspect_dataset_train")
               if any(not a.get("iscrowd") for a in d["annotations"])]
    assert r["training_images"] == len(records)
    for s in r["repeat_factors"]:
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            records, s["threshold"])
        assert s["expected_epoch_images"] == pytest.approx(float(factors.sum()))
        assert s["images_repeated"] == int((factors > 1).sum())
    assert [s["threshold"] for s in r["repeat_factors"]] == [0.001, 0.1, 0.5]
    # no config: no RFS, every record drawn alike, beta from the annotation counts, crowds out
    from projects_lda.data.class_freq import class_frequencies
    from projects_lda.app.dataset_report import image_weight_stats
    from projects_lda.modeling.balance import importance_weights

    beta = importance_weights(class_frequencies(records, 6, source="sampled", repeat_thresh=0.0))
    ids = [[a["category_id"] for a in d["annotations"] if not a.get("iscrowd")] for d in records]
    assert r["lda_weight_per_image"] == pytest.approx(
        image_weight_stats(ids, beta.double().numpy(), np.ones(len(records))))
    assert (tmp_path / "report" / "class_histogram.png").stat().st_size > 0


def test_box_only_trains_and_evaluates_bbox(own_data, train_args, tmp_path):
    import train_net

    res = train_net.main(train_args(
        tmp_path, "DATASETS.TRAIN", "('own_box_train',)", "DATASETS.TEST", "('own_box_val',)",
        "MODEL.MASK_ON", "False", "SOLVER.MAX_ITER", "2"))
    assert set(res) == {"bbox"}
    assert {"AP", "APr", "APc", "APf"} <= set(res["bbox"])


def _detections(data, seed=0, per_image=12):
    """Random detections near the objects (some of another class) and on background."""
    rng = np.random.default_rng(seed)
    cat_ids = [c["id"] for c in data["categories"]]
    by_image = {img["id"]: [] for img in data["images"]}
    for a in data["annotations"]:
        by_image[a["image_id"]].append(a)
    out = {}
    for img in data["images"]:
        rows = []
        for a in by_image[img["id"]]:
            for _ in range(3):
                x, y, w, h = a["bbox"]
                c = a["category_id"] if rng.random() < 0.6 else int(rng.choice(cat_ids))
                rows.append([x + rng.normal(0, 2), y + rng.normal(0, 2), w, h, rng.random(), c])
        while len(rows) < per_image:
            x, y = rng.uniform(0, img["width"] - 20, 2)
            rows.append([x, y, *rng.uniform(5, 20, 2), rng.random(), int(rng.choice(cat_ids))])
        out[img["id"]] = rows[:100]  # COCOeval's AP reads the top 100 per image
    return out


def _hotcoco_ap(name, dets, **kwargs):
    from detectron2.structures import Boxes, Instances

    from projects_lda.evaluation import HotcocoLVISEvaluator

    to_contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id
    ev = HotcocoLVISEvaluator(name, tasks=("bbox",), distributed=False, **kwargs)
    for image_id, rows in dets.items():
        r = torch.tensor([row[:5] for row in rows], dtype=torch.float64)
        inst = Instances((128, 128))
        inst.pred_boxes = Boxes(torch.cat([r[:, :2], r[:, :2] + r[:, 2:4]], 1).float())
        inst.scores = r[:, 4].float()
        inst.pred_classes = torch.tensor([to_contiguous[row[5]] for row in rows])
        ev.process([{"image_id": image_id}], [{"instances": inst}])
    return ev.evaluate()["bbox"]


def test_exhaustive_file_evaluates_as_cocoeval(own_data):
    """The evaluator on an exhaustive COCO-format file (crowd regions included) equals
    pycocotools' COCOeval on the same detections; read as federated, the detections of absent
    classes would be dropped and the AP higher."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = own_data["own_box_val"]
    assert any(a["iscrowd"] for a in data["annotations"])
    dets = _detections(data)
    DatasetCatalog.get("own_box_val")  # as the test loader does before the evaluator
    ours = _hotcoco_ap("own_box_val", dets)
    rows = [{"image_id": i, "bbox": r[:4], "score": r[4], "category_id": r[5]}
            for i, rs in dets.items() for r in rs]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(own_data["own_box_val_json"])
        for a in gt.dataset["annotations"]:  # COCOeval reads the area, which the file lacks
            a["area"] = a["bbox"][2] * a["bbox"][3]
        gt.createIndex()
        ref = COCOeval(gt, gt.loadRes(copy.deepcopy(rows)), "bbox")
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    for k, m in enumerate(("AP", "AP50", "AP75")):
        assert ours[m] == pytest.approx(100 * ref.stats[k], abs=1e-6), m
    federated = _hotcoco_ap("own_box_val", dets, federated=True)
    assert federated["AP"] > ours["AP"] + 1


# ----------------------------------------------------------------------- bad files
def _load_error(tmp_path, data, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match) as e:
        ds.load_lvis_format(str(path), str(tmp_path), check_images=False)
    assert str(path) in str(e.value)
    return str(e.value)


def test_bad_files_are_named(own_data, tmp_path):
    good = own_data["own_train"]
    data = copy.deepcopy(good)
    rle = next(a for a in data["annotations"] if isinstance(a.get("segmentation"), dict))
    rle["segmentation"]["size"] = [64, 64]
    msg = _load_error(tmp_path, data, r"segmentation.size \[64, 64\]")
    assert f"Annotation id {rle['id']}" in msg and "[128, 128]" in msg

    data = copy.deepcopy(good)
    data["annotations"][3]["category_id"] = 5  # between the sparse ids: not listed
    assert "category_id 5" in _load_error(tmp_path, data, "not among the categories")

    data = copy.deepcopy(good)
    data["categories"][1]["name"] = data["categories"][0]["name"]
    _load_error(tmp_path, data, "have the same name")

    data = copy.deepcopy(good)
    del data["annotations"][4]["segmentation"]
    _load_error(tmp_path, data, f"e.g. annotation id {good['annotations'][4]['id']}")

    data = copy.deepcopy(good)
    del data["images"][2]["file_name"]
    _load_error(tmp_path, data, f"Image {good['images'][2]['id']} .*'file_name'.*'coco_url'")


def test_crowd_only_image_is_left_out_of_training_and_kept_in_evaluation(own_data, tmp_path):
    """Documented behaviour: an image whose objects are all crowd regions loads; training
    leaves it out (detectron2's FILTER_EMPTY_ANNOTATIONS) and its class statistics with it."""
    from projects_lda.data.class_freq import class_frequencies_from_datasets, load_training_dicts

    data = copy.deepcopy(own_data["own_box_train"])
    first = data["images"][0]["id"]
    for a in data["annotations"]:
        if a["image_id"] == first:
            a["iscrowd"] = 1
    path = tmp_path / "crowd_only.json"
    path.write_text(json.dumps(data))
    name = "own_crowd_only_train"
    ds.register_lvis_format(name, str(path), own_data["root"])
    records = DatasetCatalog.get(name)
    assert records[0]["image_id"] == first and records[0]["annotations"]
    freq = class_frequencies_from_datasets([name], 6, source="annotations")  # loaded lists
    dicts = load_training_dicts([name])
    with_objects = [d["image_id"] for d in records
                    if any(not a.get("iscrowd") for a in d["annotations"])]
    assert first not in with_objects and [d["image_id"] for d in dicts] == with_objects
    expected = np.bincount([a["category_id"] for d in dicts for a in d["annotations"]
                            if not a.get("iscrowd")], minlength=6)
    assert freq.tolist() == expected.tolist()


def test_lvis_api_backend_refuses_an_exhaustive_file(own_data):
    from projects_lda.config import get_project_cfg
    from projects_lda.evaluation import build_evaluator

    DatasetCatalog.get("own_box_val")
    cfg = get_project_cfg()
    cfg.TEST.LVIS_EVAL.BACKEND = "lvis-api"
    with pytest.raises(ValueError,
                       match="'own_box_val' is exhaustively annotated.*BACKEND hotcoco"):
        build_evaluator(cfg, "own_box_val")


def test_importance_weight_stats_by_hand():
    from projects_lda.app.dataset_report import importance_weight_stats

    # n = (6, 3, 1, 0): beta = N / (C' n_k) = (10/18, 10/9, 10/3) over the 3 classes with samples,
    # on 60%, 30% and 10% of the rows; E_rows[beta^2] = 0.6 (10/18)^2 + 0.3 (10/9)^2 + 0.1 (10/3)^2
    # = 5/3
    s = importance_weight_stats(torch.tensor([6.0, 3.0, 1.0, 0.0]))
    assert s["min"] == pytest.approx(10 / 18) and s["max"] == pytest.approx(10 / 3)
    assert s["ratio"] == pytest.approx(6.0)
    assert s["row_median"] == pytest.approx(10 / 18)  # the most frequent class holds 60% of rows
    assert s["rows_above_5"] == 0.0
    assert s["effective_share"] == pytest.approx(0.6)
    # balanced frequencies: every weight 1, every row counts
    assert importance_weight_stats(torch.ones(5))["effective_share"] == pytest.approx(1.0)
    assert set(importance_weight_stats(torch.zeros(3)).values()) == {None}


def test_image_weight_stats_by_hand():
    from projects_lda.app.dataset_report import image_weight_stats

    # beta (0.5, 1, 4); images [0, 0], [1], [2, 0] with repeat factors 1, 1, 2: their means of
    # beta are 0.5, 1 and 2.25, drawn a quarter, a quarter and half of the time; sums 1, 1, 4.5
    s = image_weight_stats([[0, 0], [1], [2, 0]], [0.5, 1.0, 4.0], [1.0, 1.0, 2.0])
    assert s["mean"] == pytest.approx(1.5)
    assert s["sd"] == pytest.approx((0.25 * 1.0 + 0.25 * 0.25 + 0.5 * 0.75**2) ** 0.5)
    assert (s["median"], s["p99"], s["max"]) == (1.0, 2.25, 2.25)
    assert s["images_above_5"] == 0.0
    # the heaviest 10% of the draws are all the third image's: 0.1 x 4.5 of 2.75 in all
    assert s["top10_share"] == pytest.approx(0.45 / 2.75)
    # every image alike: no spread, the heaviest 10% carry 10%
    same = image_weight_stats([[0], [0], [0]], [2.0], [1.0, 1.0, 1.0])
    assert (same["sd"], same["images_above_5"]) == (0.0, 0.0)
    assert same["top10_share"] == pytest.approx(0.1)
