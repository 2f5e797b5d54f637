"""
AP-fixed and AP-pool (Dave et al. 2021): the streamed evaluator against lvis-api run as the
authors' scripts run it (top K per category of the results file, no per-image cap) and against a
slow pooled reference written here; the precision interpolation on a hand-made list; the top-K
cut with ties; two processes equal one; bad settings are named.
"""
import functools
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
from conftest import relabel_rare, run_gloo_workers

from detectron2.data import MetadataCatalog
from detectron2.evaluation.coco_evaluation import instances_to_coco_json

from projects_lda import get_project_cfg
from projects_lda.evaluation import HotcocoLVISEvaluator, build_evaluator
from projects_lda.evaluation import large_vocab
from projects_lda.evaluation.synthetic import index_by_image, make_detections, make_lvis_like_gt

NAME = "large_vocab_val"
K = 25  # small enough that the cut bites on most categories, with ties at the cut
FIXED_KEYS = [f"{m}-fixed" for m in ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc",
                                     "APf")]
POOL_KEYS = [f"{m}-pool" for m in ("AP", "AP50", "AP75", "APr", "APc", "APf")]


def _outputs(gt):
    """250 detections per image, 420 on every 4th, none on every 9th; scores with 2 decimals
    (ties); 5% empty masks (lvis-api leaves them out after the cut)."""
    index_by_image(gt)
    rng = np.random.default_rng(0)
    outs = []
    for img in gt["images"]:
        n = 0 if img["id"] % 9 == 0 else (420 if img["id"] % 4 == 0 else 250)
        inst = make_detections(gt, img, n, seed=2, score_decimals=2)
        inst.pred_masks[torch.from_numpy(rng.random(n) < 0.05)] = False
        outs.append(({"image_id": img["id"]}, {"instances": inst}))
    del gt["_by_image"]
    return outs


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    gt = make_lvis_like_gt(20, 30, seed=11, image_size=(120, 160), instances_per_image=5,
                           neg_per_image=5)
    relabel_rare(gt, 6)  # so that the rare pool and APr count
    path = tmp_path_factory.mktemp("large_vocab") / "val.json"
    path.write_text(json.dumps(gt))
    if NAME in MetadataCatalog.list():
        MetadataCatalog.remove(NAME)
    MetadataCatalog.get(NAME).set(json_file=str(path), evaluator_type="lvis")
    return {"gt": gt, "path": path, "outputs": _outputs(json.loads(json.dumps(gt)))}


def _run(evaluator, outputs):
    evaluator.reset()
    for inp, out in outputs:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


def _rows(outputs, task):
    """The results file: images in id order, each image's detections in the model's order."""
    rows = []
    for inp, out in sorted(outputs, key=lambda o: o[0]["image_id"]):
        for r in instances_to_coco_json(out["instances"], inp["image_id"]):
            r["category_id"] += 1
            if task == "segm":
                r.pop("bbox")
            rows.append(r)
    return rows


def _top_k_per_category(rows, k):
    """evaluate_ap_fixed.py's cut: per category, Python's stable sort by score, first k."""
    by_cat = defaultdict(list)
    for r in rows:
        by_cat[r["category_id"]].append(r)
    return [r for anns in by_cat.values()
            for r in sorted(anns, key=lambda a: a["score"], reverse=True)[:k]]


def _lvis_eval(path, rows, task):
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(str(path))
    ev = LVISEval(gt, LVISResults(gt, rows, max_dets=-1), task)
    ev.params.max_dets = -1
    ev.run()
    return ev


def _slow_pooled_ap(ev, pool_cats, iou_index=None):
    """AP over one pool from lvis-api's per-image, per-category matches, written plainly:
    concatenate the (image, category) lists in that order, rank by score (stable), count."""
    p = ev.params
    entries = []
    for img_idx in range(len(p.img_ids)):
        for cat_idx, cat in enumerate(p.cat_ids):
            if cat not in pool_cats:
                continue
            e = ev.eval_imgs[cat_idx * len(p.area_rng) * len(p.img_ids) + img_idx]  # area all
            if e is not None:
                entries.append(e)
    num_gt = sum(int((np.asarray(e["gt_ignore"]) == 0).sum()) for e in entries)
    if num_gt == 0:
        return -1.0
    scores = [s for e in entries for s in e["dt_scores"]]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable
    aps = []
    for t in range(len(p.iou_thrs)) if iou_index is None else [iou_index]:
        matched = [m for e in entries for m in e["dt_matches"][t]]
        ignored = [g for e in entries for g in e["dt_ignore"][t]]
        tp = fp = 0
        prec, rec = [], []
        for i in order:
            if ignored[i]:
                pass
            elif matched[i]:
                tp += 1
            else:
                fp += 1
            prec.append(tp / (tp + fp + np.spacing(1)))
            rec.append(tp / num_gt)
        for i in range(len(prec) - 2, -1, -1):
            prec[i] = max(prec[i], prec[i + 1])
        at = []
        for r in p.rec_thrs:
            j = next((j for j, x in enumerate(rec) if x >= r), None)
            at.append(prec[j] if j is not None else 0.0)
        aps.append(np.mean(at))
    return float(np.mean(aps))


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_fixed_and_pooled_equal_the_references(synthetic, task):
    outputs = synthetic["outputs"]
    ours = _run(HotcocoLVISEvaluator(NAME, tasks=(task,), metrics=("standard", "fixed", "pool"),
                                     dets_per_category=K), outputs)[task]
    standard = _run(HotcocoLVISEvaluator(NAME, tasks=(task,)), outputs)[task]
    for key, value in standard.items():  # the standard AP does not change
        assert ours[key] == value, key
    rows = _top_k_per_category(_rows(outputs, task), K)
    ev = _lvis_eval(synthetic["path"], rows, task)
    ref = ev.get_results()
    for key in FIXED_KEYS:
        assert ours[key] == pytest.approx(ref[key.replace("-fixed", "")] * 100, abs=1e-4), key
    freq = {c["id"]: c["frequency"] for c in synthetic["gt"]["categories"]}
    for key, group in (("AP-pool", "rcf"), ("APr-pool", "r"), ("APc-pool", "c"),
                       ("APf-pool", "f")):
        pool = {c for c, f in freq.items() if f in group}
        assert ours[key] == pytest.approx(_slow_pooled_ap(ev, pool) * 100, abs=1e-4), key
    assert ours["AP50-pool"] == pytest.approx(_slow_pooled_ap(ev, set(freq), 0) * 100, abs=1e-4)
    # the cut matters here: without it AP-fixed is another number
    assert ours["AP-fixed"] != pytest.approx(standard["AP"], abs=1e-3)
    for key in ["AP-fixed", "APr-fixed", "APc-fixed", "APf-fixed"] + POOL_KEYS:
        assert 1.0 < ours[key] < 95.0, key  # every group and pool has objects: not -1 (empty)


def test_ties_at_the_cut_keep_image_then_model_order():
    rec = np.zeros(6, dtype=large_vocab.RECORD)
    rec["cat"] = [0, 0, 0, 0, 1, 1]
    rec["score"] = [0.5, 0.9, 0.5, 0.5, 0.2, 0.3]
    rec["image"] = [7, 3, 3, 7, 1, 1]
    rec["order"] = [4, 0, 9, 2, 0, 1]
    top = large_vocab.top_k_per_category(rec, 3)
    # category 0: 0.9, then the 0.5s of image 3 before image 7's, image 7's by model order
    assert list(zip(top["cat"], top["image"], top["order"])) == [
        (0, 3, 0), (0, 3, 9), (0, 7, 2), (1, 1, 1), (1, 1, 0)]


def test_match_records_stay_bounded_and_cut_like_one_sort():
    rng = np.random.default_rng(0)
    store = large_vocab.MatchRecords([10, 20, 30], k=5, buffer=12)
    everything = []
    for image in range(40):
        rec = np.zeros(4, dtype=large_vocab.RECORD)
        rec["cat"] = rng.integers(0, 3, 4)
        rec["score"] = rng.integers(0, 5, 4) / 4  # many ties
        rec["image"] = image
        rec["order"] = np.arange(4)
        store.add(rec)
        everything.append(rec)
        assert store._held <= max(store.buffer, 12) + 4
    assert np.array_equal(store.records(),
                          large_vocab.top_k_per_category(np.concatenate(everything), 5))
    with pytest.raises(ValueError, match="category id 25 is not a category of the dataset"):
        store.cat_index(np.array([10, 25]))
    with pytest.raises(ValueError, match="category id 31 is not"):  # beyond the last id
        store.cat_index(np.array([30, 31]))
    assert list(store.cat_index(np.array([30, 10, 20]))) == [2, 0, 1]


def _hand_made_records():
    """Six detections at IoU 0.5, area "all": two in the top bin (one matched), one matched in
    the second, one ignored there, one unmatched in the first, one not evaluated."""
    rec = np.zeros(6, dtype=large_vocab.RECORD)
    rec["score"] = [0.95, 0.91, 0.15, 0.12, 0.05, 0.9]
    rec["evaluated"] = [True, True, True, True, True, False]
    flags = np.zeros((large_vocab.T, large_vocab.A, 6), bool)
    flags[:, :, [0, 2, 5]] = True  # matched at every threshold and area
    rec["matched"] = large_vocab._bits(flags)
    ignored = np.zeros_like(flags)
    ignored[:, :, 3] = True
    rec["ignored"] = large_vocab._bits(ignored)
    return rec


def test_reliability_bins_precision_and_ece_by_hand(tmp_path, capsys):
    r = large_vocab.reliability(_hand_made_records(), bins=10)
    assert r["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert r["precision"][[0, 1, 9]] == pytest.approx([0.0, 1.0, 0.5])
    assert np.isnan(r["precision"][2])
    assert r["mean_score"][[0, 1, 9]] == pytest.approx([0.05, 0.15, 0.93])
    # (2 |0.5 - 0.93| + |1 - 0.15| + |0 - 0.05|) / 4
    assert r["ece"] == pytest.approx(1.76 / 4)
    assert r["bin_error"] == pytest.approx((0.05 + 0.85 + 0.43) / 3)
    assert large_vocab.reliability(_hand_made_records(), bins=2)["count"].tolist() == [2, 2]
    with pytest.raises(ValueError, match="iou=0.52: not one of the evaluation's thresholds"):
        large_vocab.reliability(_hand_made_records(), iou=0.52)
    # empty: no detection counts, ECE 0, no NaN warning turned error
    empty = large_vocab.reliability(np.zeros(0, dtype=large_vocab.RECORD))
    assert empty["count"].sum() == 0 and empty["ece"] == 0.0 == empty["bin_error"]

    from projects_lda.benchmark import plot_analysis as pa

    np.save(tmp_path / "r.npy", _hand_made_records())
    stats = pa.main(["reliability", "--run", f"lda={tmp_path / 'r.npy'}", "--bins", "2",
                     "--out", str(tmp_path / "rel.png")])
    assert stats["lda"]["ece"] == pytest.approx((2 * abs(0.5 - 0.1) + 2 * abs(0.5 - 0.93)) / 4)
    assert (tmp_path / "rel.png").stat().st_size > 0
    assert "lda" in capsys.readouterr().out


def lvis_precision(tps, fps, num_gt):
    """
    lvis-api's interpolated precision at its 101 recall thresholds for one ranked list.

    Args:
        tps, fps (ndarray[T', D] bool): true / false positives in rank order (ignored
            detections are neither).
        num_gt (int): objects that count (> 0).
    Returns:
        ndarray[T', 101].
    """
    tps, fps = np.asarray(tps, bool), np.asarray(fps, bool)
    lists = large_vocab.RankedLists(tps, ~tps & ~fps, [0, tps.shape[1]])
    return lists.precision(np.ones(tps.shape[1], np.int64), [num_gt])[:, 0]


def test_lvis_precision_on_a_hand_made_list():
    # ranked: TP, FP, ignored, TP; 4 objects: recall 0.25, 0.25, 0.25, 0.5
    tps = np.array([[True, False, False, True]])
    fps = np.array([[False, True, False, False]])
    p = lvis_precision(tps, fps, 4)
    # precision 1, 1/2, 1/2, 2/3 -> interpolated 1, 2/3, 2/3, 2/3; recall thresholds 0..0.25 take
    # the first rank, 0.26..0.5 the fourth, above 0.5 nothing (0)
    assert p.shape == (1, 101)
    np.testing.assert_allclose(p[0, :26], 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p[0, 26:51], 2 / 3, rtol=0, atol=1e-12)
    assert (p[0, 51:] == 0).all()
    assert (lvis_precision(np.zeros((2, 0), bool), np.zeros((2, 0), bool), 3)
            == 0).all()
    # copies: the first twice, the FP left out, the rest once: the list TP, TP, ignored, TP of
    # precision 1, 1, 1, 1 and recall 0.25, 0.5, 0.5, 0.75
    lists = large_vocab.RankedLists(tps, ~tps & ~fps, [0, 4])
    p = lists.precision(np.array([2, 0, 1, 1]), [4])
    assert p.shape == (1, 1, 101)
    assert (p[0, 0, :76] == 1.0).all() and (p[0, 0, 76:] == 0).all()
    # two lists in one: the second (the hand-made list again) as if alone
    lists = large_vocab.RankedLists(np.tile(tps, 2), np.tile(~tps & ~fps, 2), [0, 4, 8])
    p = lists.precision(np.array([0, 0, 0, 0, 1, 1, 1, 1]), [4, 4])
    assert (p[0, 0] == 0).all()
    np.testing.assert_array_equal(p[0, 1], lvis_precision(tps, fps, 4)[0])


def _half_on_each_rank(gt_path, rank):
    gt = json.loads(open(gt_path).read())
    MetadataCatalog.get(NAME).set(json_file=gt_path, evaluator_type="lvis")
    ev = HotcocoLVISEvaluator(NAME, tasks=("bbox",), metrics=("fixed", "pool"),
                              dets_per_category=K)
    ev.reset()
    for inp, out in _outputs(gt)[rank::2]:
        ev.process([inp], [out])
    return ev.evaluate()


def test_two_gloo_processes_equal_one_and_only_what_is_asked(synthetic):
    one = _run(HotcocoLVISEvaluator(NAME, tasks=("bbox",), metrics=("fixed", "pool"),
                                    dets_per_category=K), synthetic["outputs"])
    assert sorted(one["bbox"]) == sorted(FIXED_KEYS + POOL_KEYS)  # no standard AP asked for
    results = run_gloo_workers(functools.partial(_half_on_each_rank, str(synthetic["path"])))
    assert results[1] is None
    for key, value in one["bbox"].items():
        assert results[0]["bbox"][key] == pytest.approx(value, abs=1e-9), key


def test_bad_settings_are_named(synthetic):
    with pytest.raises(ValueError, match=r"TEST.LVIS_EVAL.METRICS: \['fixd'\] asked for"):
        HotcocoLVISEvaluator(NAME, metrics=("standard", "fixd"))
    with pytest.raises(ValueError, match="DETECTIONS_PER_CATEGORY must be positive, got 0"):
        HotcocoLVISEvaluator(NAME, metrics=("fixed",), dets_per_category=0)
    cfg = get_project_cfg()
    cfg.TEST.LVIS_EVAL.BACKEND = "lvis-api"
    cfg.TEST.LVIS_EVAL.METRICS = ("standard", "pool")
    with pytest.raises(ValueError, match="computed by the hotcoco backend only"):
        build_evaluator(cfg, NAME, "unused")
    cfg.TEST.LVIS_EVAL.BACKEND = "hotcoco"
    ev = build_evaluator(cfg, NAME, "unused")
    assert ev._metrics == ("standard", "pool") and ev._dets_per_category == 10000
    # no detection anywhere: every AP-fixed / AP-pool is 0, not NaN; -100 (lvis-api's -1) where
    # nothing counts: this set has no large object
    empty = [(inp, {"instances": out["instances"][:0]}) for inp, out in synthetic["outputs"]]
    res = _run(HotcocoLVISEvaluator(NAME, tasks=("bbox",), metrics=("fixed", "pool")), empty)
    assert {k: v for k, v in res["bbox"].items() if v != 0.0} == {"APl-fixed": -100.0}


@pytest.fixture(scope="module")
def saved_records(synthetic, tmp_path_factory):
    """Two methods' match records as the evaluator saves them: the synthetic detections (a),
    and the same with the scores of each image reversed in rank (b, worse); with their
    evaluations and the set's per-image object counts."""
    outputs = synthetic["outputs"]
    worse = []
    for inp, out in outputs:
        inst = out["instances"]
        inst = inst[torch.argsort(inst.scores)] if len(inst) else inst
        inst.scores = inst.scores.flip(0)
        worse.append((inp, {"instances": inst}))
    out = {"res": {}, "records": {}}
    for name, outs in (("a", outputs), ("b", worse)):
        folder = tmp_path_factory.mktemp(f"records_{name}")
        ev = HotcocoLVISEvaluator(NAME, tasks=("bbox",), metrics=("fixed", "pool"),
                                  dets_per_category=K, output_dir=str(folder))
        out["res"][name] = _run(ev, outs)["bbox"]
        out["records"][name] = np.load(folder / "lvis_match_records_bbox.npy")
    gt = synthetic["gt"]
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    out["image_ids"] = [img["id"] for img in gt["images"]]
    out["counts"] = large_vocab.gt_counts_per_image(gt["annotations"], [c["id"] for c in cats],
                                                    out["image_ids"])
    out["freq"] = [c["frequency"] for c in cats]
    return out


def test_bootstrap_of_differences_from_the_saved_records(saved_records):
    """The bootstrap's point estimate is the difference of the two evaluations, its interval
    contains it, and a method against itself gives 0."""
    res, records = saved_records["res"], saved_records["records"]
    args = saved_records["counts"], saved_records["image_ids"], saved_records["freq"], K
    ci = large_vocab.bootstrap_difference(records["a"], records["b"], *args, n_bootstrap=20)
    for m in ("AP-fixed", "AP-pool"):
        diff, lo, hi = ci[m]
        assert diff == pytest.approx(res["b"][m] - res["a"][m], abs=1e-9), m
        assert lo <= diff <= hi and diff < -1.0, (m, ci[m])  # reversed scores are worse
    same = large_vocab.bootstrap_difference(records["a"], records["a"], *args, n_bootstrap=5)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())
    bad = records["a"].copy()
    bad["image"][3] = 10 ** 6
    with pytest.raises(ValueError, match="image id 1000000 of the records is not an image"):
        large_vocab.bootstrap_samples(bad, *args, n_bootstrap=1)


def _resampled(records, image_ids, multiplicity):
    """A bootstrap sample written out: each image's records repeated as often as the image was
    drawn, each copy a new image (its key orders the copies)."""
    pos = np.searchsorted(image_ids, records["image"])
    m = multiplicity[pos]
    out = np.repeat(records, m)
    copy = np.arange(len(out)) - np.repeat(np.cumsum(m) - m, m)
    out["image"] = np.repeat(pos, m) * (int(multiplicity.max()) + 1) + copy
    return out


def test_copies_equal_the_resample_written_out(saved_records):
    """A resample evaluated as copies of the ranked records (no detection repeated, no sort)
    equals the resample written out as records, cut to the top K and evaluated: every
    AP-fixed and AP-pool key, bit for bit. The scores are made distinct first (the synthetic
    ones have ties within an image, where the two would order tied copies differently)."""
    rec = saved_records["records"]["a"].copy()
    rec["score"] += np.random.default_rng(0).permutation(len(rec)) * 1e-9
    image_ids = np.asarray(sorted(saved_records["image_ids"]))
    counts, freq = saved_records["counts"], saved_records["freq"]
    ranked = large_vocab.RankedRecords(rec, counts.shape[1])
    pos = np.searchsorted(image_ids, ranked.records["image"])
    rng = np.random.default_rng(1)
    for _ in range(3):
        mult = np.bincount(rng.integers(0, len(image_ids), len(image_ids)),
                           minlength=len(image_ids))
        num_gt = np.tensordot(mult, counts, axes=1)
        written = large_vocab.fixed_and_pooled_ap(
            large_vocab.top_k_per_category(_resampled(rec, image_ids, mult), K), num_gt, freq)
        copies = ranked.copies_in_top_k(mult[pos], K)
        assert copies.sum() < mult[pos].sum()  # the cut bites
        assert ranked.average_precision(num_gt, freq, copies=copies) == written


def test_recall_counts_match_lvis_apis_float_comparison():
    n = np.arange(1, 3001)
    need = large_vocab._recall_counts(n)
    thr = large_vocab.REC_THRS
    assert (need / n[:, None] >= thr).all()
    assert ((need - 1) / n[:, None] < thr).all()
    assert need[:, 0].tolist() == [0] * len(n) and (need[:, -1] == n).all()
