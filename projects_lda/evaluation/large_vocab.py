"""
AP-fixed and AP-pool (Dave, Dollar, Ramanan, Kirillov and Girshick, "Evaluating Large-Vocabulary
Object Detectors: The Devil is in the Details", 2021), computed from per-detection match records
so that each process keeps, per category, only the detections that can still be in the top K.

Definitions, as the paper and its authors' evaluation scripts give them:

* **AP-fixed**: no per-image cap; per category, the K (LVIS: 10,000) highest-scored detections
  over the whole evaluation set are kept, counting the detections on images where the category
  is not evaluated (they take a place in the top K, then the federated rules ignore them, as in
  the reference: top K per category of the results file, then ``LVISResults(max_dets=-1)``).
  Then LVIS AP exactly as lvis-api computes it (federated rules, IoU 0.50:0.95, 101 recall
  points, areas, r/c/f groups).
* **AP-pool**: the same top-K detections per category and the same per-category matching, but
  one precision-recall curve per *pool* of categories: the detections of all categories of the
  pool ranked together by score, the true positives against the pool's total ground truth
  (area "all" only). Pools: all categories (AP-pool), and the rare, common and frequent ones
  (APr-pool, APc-pool, APf-pool). A score that ranks correctly across classes is rewarded:
  calibration, not only the order within a class.

Ties are broken as lvis-api breaks them for a results file sorted by image id, each image's
detections in the model's order: by image id, then the model's order (pools: image id,
category, model order).

Matching is hotcoco's LVIS mode (``LVISResults(max_dets=-1)`` + ``LVISeval.evaluate()`` on one
image): for each detection, matched or not and ignored or not at each IoU threshold and area
range. Removing detections of lower score (or later in a tie) from an image does not change
the matches of the others (greedy matching in score order), so the matches of the kept top K
are those computed with every detection present.
"""
import math

import numpy as np

__all__ = ["MatchRecords", "RankedLists", "RankedRecords",
           "bootstrap_difference", "bootstrap_samples", "fixed_and_pooled_ap",
           "gt_counts_per_image", "paired_interval", "reliability",
           "top_k_per_category"]

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = ((0, 1e5 ** 2), (0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
T, A = len(IOU_THRS), len(AREA_RANGES)

# one detection per row: category index, score, image id, rank in its image (the model's
# order), evaluated (category in the image's annotated or negative categories), and two
# T x A bit sets (bit t * A + a): matched / ignored at IoU threshold t and area range a
RECORD = np.dtype([("cat", np.int32), ("score", np.float64), ("image", np.int64),
                   ("order", np.int32), ("evaluated", np.bool_), ("matched", np.uint64),
                   ("ignored", np.uint64)])


def _bits(flags):
    """(T, A, D) booleans -> (D,) uint64 with bit t * A + a set where flags[t, a]."""
    weights = (np.uint64(1) << np.arange(T * A, dtype=np.uint64)).reshape(T, A, 1)
    return np.bitwise_or.reduce(np.where(flags, weights, np.uint64(0)), axis=(0, 1))


def _positions(sorted_ids, ids, unknown):
    """Where each of ``ids`` stands in ``sorted_ids``; ``unknown`` (formatted with the first id
    that is not there) is raised as a ValueError."""
    ids = np.asarray(ids)
    pos = np.searchsorted(sorted_ids, ids)
    known = pos < len(sorted_ids)
    known[known] = sorted_ids[pos[known]] == ids[known]
    if not known.all():
        raise ValueError(unknown.format(int(ids[~known][0])))
    return pos


class MatchRecords:
    """
    The match records of one process, bounded: whenever more than ``buffer`` records are held,
    each category is cut to its top ``k`` (and the buffer grows to twice what a cut keeps, so
    that cuts stay rare).

    Args:
        cat_ids (list[int]): the dataset's category ids (record ``cat`` indexes their sorted list).
        k (int): detections kept per category (LVIS: 10,000).
        buffer (int): records held before a cut.
    """

    def __init__(self, cat_ids, k=10000, buffer=2_000_000):
        if k <= 0:
            raise ValueError(f"detections per category must be positive, got {k}")
        self.cat_ids = np.asarray(sorted(cat_ids), dtype=np.int64)
        self.k = int(k)
        self.buffer = max(int(buffer), 1)
        self._chunks = []
        self._held = 0

    def cat_index(self, cat_ids):
        return _positions(self.cat_ids, cat_ids, "category id {} is not a category of the dataset")

    def add(self, records):
        if len(records) == 0:
            return
        self._chunks.append(records)
        self._held += len(records)
        if self._held > self.buffer:
            self._chunks = [top_k_per_category(np.concatenate(self._chunks), self.k)]
            self._held = len(self._chunks[0])
            # a cut that frees little would be repeated at every add: grow the buffer instead
            self.buffer = max(self.buffer, 2 * self._held)

    def records(self):
        """The records held, cut to the top ``k`` per category."""
        if not self._chunks:
            return np.zeros(0, dtype=RECORD)
        out = top_k_per_category(np.concatenate(self._chunks), self.k)
        self._chunks, self._held = [out], len(out)
        return out


def rank_order(records):
    """Indices sorting ``records`` by category, then score descending, then image id, then the
    model's order."""
    return np.lexsort([records["order"], records["image"], -records["score"], records["cat"]])


def top_k_per_category(records, k):
    """The ``k`` best-ranked records of each category (``rank_order``), in that order."""
    if len(records) == 0:
        return records
    records = records[rank_order(records)]
    cats = records["cat"]
    starts = np.flatnonzero(np.r_[True, cats[1:] != cats[:-1]])
    first = np.repeat(starts, np.diff(np.r_[starts, len(cats)]))
    return records[np.arange(len(cats)) - first < k]


def records_from_eval_imgs(eval_imgs, cat_index, image_id, num_dets, dt_order):
    """
    Match records of one image from hotcoco's ``eval_imgs`` (lvis-api's ``evaluate_img`` for
    every category and area range of the image).

    Args:
        eval_imgs (list[dict or None]): ``COCOeval.eval_imgs`` after ``evaluate()`` on the image.
        cat_index (callable): category ids -> record category indices.
        num_dets (int): the number of evaluated detections given to the evaluation.
        dt_order (ndarray[num_dets]): each evaluated detection's rank in the model's output;
            the evaluation's detection id ``i`` (1-based, in the order given) is
            ``dt_order[i - 1]``.
    Returns:
        ndarray of RECORD, one per evaluated detection (``evaluated`` True).
    """
    matched = np.zeros((T, A, num_dets), dtype=bool)
    ignored = np.zeros((T, A, num_dets), dtype=bool)
    score = np.zeros(num_dets)
    cat = np.zeros(num_dets, dtype=np.int64)
    seen = np.zeros(num_dets, dtype=bool)
    for e in eval_imgs:
        if e is None or not e["dtIds"]:
            continue
        a = _area_index(e["aRng"])
        ids = np.asarray(e["dtIds"], dtype=np.int64) - 1
        matched[:, a, ids] = np.asarray(e["dtMatched"], dtype=bool)
        ignored[:, a, ids] = np.asarray(e["dtIgnore"], dtype=bool)
        score[ids] = e["dtScores"]
        cat[ids] = e["category_id"]
        seen[ids] = True
    if not seen.all():
        raise RuntimeError(f"image {image_id}: {int((~seen).sum())} evaluated detections are "
                           "missing from the per-image evaluation")
    out = unevaluated_records(cat_index, cat, score, image_id, dt_order)
    out["evaluated"] = True
    out["matched"] = _bits(matched)
    out["ignored"] = _bits(ignored)
    return out


def _area_index(rng):
    # called for every (category, area range) of every image: math.isclose, not numpy's (a
    # hundred times slower on scalars, most of the evaluator's time at hundreds of categories)
    for i, (lo, hi) in enumerate(AREA_RANGES):
        if math.isclose(rng[0], lo, rel_tol=1e-9) and math.isclose(rng[1], hi, rel_tol=1e-9):
            return i
    raise ValueError(f"unexpected area range {rng}")


def unevaluated_records(cat_index, cat_ids, scores, image_id, order):
    """Records of detections of categories the image is not evaluated for: they take their
    place in the top K of their category and are then ignored."""
    out = np.zeros(len(scores), dtype=RECORD)
    out["cat"] = cat_index(cat_ids)
    out["score"] = scores
    out["image"] = image_id
    out["order"] = order
    return out


def _counted(annotations):
    """(A, N) booleans: whether each ground-truth object counts in each area range, by
    lvis-api's rule: not in a range its ``area`` is outside of (bounds included), nor if it
    carries ``ignore``."""
    area = np.asarray([a["area"] for a in annotations], dtype=np.float64)
    ignore = np.asarray([bool(a.get("ignore", 0)) for a in annotations], dtype=bool)
    return np.stack([~ignore & (area >= lo) & (area <= hi) for lo, hi in AREA_RANGES])


def num_gt_per_category(annotations, cat_ids):
    """(K, A) ground-truth objects that count per category and area range (``_counted``)."""
    cat_ids = np.asarray(sorted(cat_ids))
    out = np.zeros((len(cat_ids), A), dtype=np.int64)
    if not annotations:
        return out
    cats = np.searchsorted(cat_ids, [a["category_id"] for a in annotations])
    for i, keep in enumerate(_counted(annotations)):
        out[:, i] = np.bincount(cats[keep], minlength=len(cat_ids))
    return out


def _recall_counts(num_gt):
    """(R, 101) the fewest true positives ``j`` with ``j / num_gt >= threshold`` in float64, as
    lvis-api compares its recall with each threshold: true-positive counts are integers, so the
    first rank reaching a threshold is found by an integer search (exact) instead of a float
    one."""
    n = np.asarray(num_gt, dtype=np.float64)[:, None]
    j = np.ceil(REC_THRS * n)
    # the product's rounding can put the ceiling one off: correct it with the division itself
    j = np.where((j - 1) / n >= REC_THRS, j - 1, j)
    j = np.where(j / n < REC_THRS, j + 1, j)
    return j.astype(np.int64)


class RankedLists:
    """
    Ranked lists of detections (one per category, or one per pool), reduced to what lvis-api's
    interpolated precision depends on, so that it can be computed again for any number of
    copies of each detection (a bootstrap sample) without a pass over every detection and
    threshold.

    The curve only needs the true positives: lvis-api takes, for each recall threshold, the
    highest precision at or after the first rank reaching it; that rank is a true positive (or
    the list's first, for a threshold of 0), and the precision after a false positive or an
    ignored detection is at most that of the true positive before it. So precision is computed
    at the true positives only ("events"), with the false positives before each from running
    sums of sparse events: the counted detections (not ignored) less the true positives, where
    the counted ones are all the detections (one sum, the same at every IoU threshold) less the
    ignored ones when few are ignored (area "all"), or are summed directly when most are (the
    small, medium and large ranges). The copies of a detection add at once: their
    curve ranked one after the other. Exact: the tests check it against lvis-api, ties
    included.

    Args:
        tp, ignored (ndarray[T', D] bool): per IoU threshold, in rank order: true positive;
            ignored (matched to an ignored object, or outside the area range); a detection
            that is neither is a false positive.
        starts (ndarray[R + 1] int): list ``r`` is ``starts[r]:starts[r + 1]``.
    """

    def __init__(self, tp, ignored, starts):
        self.num_thresholds, width = tp.shape
        self.starts = np.asarray(starts, dtype=np.int64)
        self.num_lists = len(self.starts) - 1
        # events in (threshold, rank) order: the key t * width + rank sorts them all
        t, self.tp_pos = np.nonzero(tp)
        # sum whichever of the ignored and the counted detections is the fewer
        self.count_ignored = 2 * np.count_nonzero(ignored) <= ignored.size
        it, self.sum_pos = np.nonzero(ignored if self.count_ignored else ~ignored)
        tp_key, sum_key = t * width + self.tp_pos, it * width + self.sum_pos
        row = np.searchsorted(self.starts, self.tp_pos, side="right") - 1
        self.group = t * self.num_lists + row  # (threshold, list) of each event, sorted
        groups = self.num_thresholds * self.num_lists
        self.bounds = np.searchsorted(self.group, np.arange(groups + 1))
        self.first = self.starts[row]  # the first rank of each event's list
        # where the running sums stand just before each event's list and at each event, as
        # indices into sums that start with a 0: fixed, whatever the copies
        before_list = t * width + self.first - 1
        self.tp_before = np.searchsorted(tp_key, before_list, side="right")
        self.sum_at = np.searchsorted(sum_key, tp_key, side="right")
        self.sum_before = np.searchsorted(sum_key, before_list, side="right")
        group_t = np.repeat(np.arange(self.num_thresholds), self.num_lists)
        group_first = np.tile(self.starts[:-1], self.num_thresholds)
        self.group_tp_before = np.searchsorted(tp_key, group_t * width + group_first - 1,
                                               side="right")

    def precision(self, copies, num_gt):
        """
        Args:
            copies (ndarray[D] int): copies of each detection (0: left out).
            num_gt (ndarray[R] int): objects that count per list (> 0).
        Returns:
            ndarray[T', R, 101]: lvis-api's interpolated precision.
        """
        groups = self.num_thresholds * self.num_lists
        out = np.zeros((groups, len(REC_THRS)))
        n = len(self.tp_pos)
        if n:
            tp_sum = np.r_[0, np.cumsum(copies[self.tp_pos])]
            part_sum = np.r_[0, np.cumsum(copies[self.sum_pos])]
            summed = part_sum[self.sum_at] - part_sum[self.sum_before]  # since the list's start
            if self.count_ignored:
                every = np.r_[0, np.cumsum(copies)]
                summed = every[self.tp_pos + 1] - every[self.first] - summed
            tp = tp_sum[1:] - tp_sum[self.tp_before]
            fp = summed - tp
            pr = tp / (tp + fp + np.spacing(1))
            # the highest precision from each event to the end of its list: a running maximum
            # from the end over integer keys, each precision's rank offset by its list's, so
            # that the maximum restarts at each list and maps back to the exact value
            order = np.argsort(pr, kind="stable")
            rank = np.empty(n, np.int64)
            rank[order] = np.arange(n)
            offset = (groups - 1 - self.group) * n
            best = np.maximum.accumulate((offset + rank)[::-1])[::-1] - offset
            envelope = pr[order[best]]
            # the first event of each list whose true positives reach each threshold's count:
            # the sums never decrease, so one search serves every list
            need = np.tile(_recall_counts(num_gt), (self.num_thresholds, 1))
            idx = np.searchsorted(tp_sum[1:], tp_sum[self.group_tp_before][:, None] + need)
            idx = np.maximum(idx, self.bounds[:-1, None])
            hit = idx < self.bounds[1:, None]  # beyond the recall reached: precision 0
            out[hit] = envelope[idx[hit]]
        return out.reshape(self.num_thresholds, self.num_lists, len(REC_THRS))


def _mean(p):
    p = p[p > -1]
    return float(np.mean(p)) if p.size else -1.0


def _flags(bits, a):
    """(T, D) booleans of one area range from the records' bit sets."""
    out = np.empty((T, len(bits)), bool)
    for t in range(T):
        np.not_equal(bits & np.uint64(1 << (t * A + a)), 0, out=out[t])
    return out


def _is_ranked(records):
    """Whether ``records`` are in ``rank_order`` already (as ``top_k_per_category`` leaves
    them): one pass over neighbours instead of a sort."""
    if len(records) < 2:
        return True
    later = records[1:]
    earlier = records[:-1]
    in_order = np.zeros(len(later), bool)
    tied = np.ones(len(later), bool)
    for key, sign in (("cat", 1), ("score", -1), ("image", 1), ("order", 1)):
        a, b = sign * earlier[key], sign * later[key]
        in_order |= tied & (a < b)
        tied &= a == b
    return bool((in_order | tied).all())


class RankedRecords:
    """
    One method's kept records ranked once, for both curves: per category by rank
    (``rank_order``) for AP-fixed, and all categories together by score for AP-pool. Evaluated
    as they are, or with a number of copies of each record (a bootstrap sample of the images):
    the copies of a record are then ranked one after the other (exact wherever no two
    detections of an image and category share a score; lvis-api would interleave such tied
    copies image copy by image copy).

    Args:
        records (ndarray of RECORD): the kept detections, evaluated or not (the unevaluated
            ones take their place in a top-K cut, then count for nothing).
        num_cats (int): categories in the evaluation set.
    """

    def __init__(self, records, num_cats):
        self.records = rec = records if _is_ranked(records) else records[rank_order(records)]
        self.starts = np.searchsorted(rec["cat"], np.arange(num_cats + 1))
        # the curves are made of the evaluated records (the others only hold a place in the
        # top K): their positions, their bit sets and their categories' bounds
        self._evaluated = np.flatnonzero(rec["evaluated"])
        ev = rec[["cat", "score", "image", "order", "matched", "ignored"]][self._evaluated]
        self._ev = ev
        self._bits = ev["matched"], ev["ignored"]
        self._ev_starts = np.searchsorted(ev["cat"], np.arange(num_cats + 1))
        # area "all": AP-fixed, AP-pool and every bootstrap resample need it
        self._tp, self._ignored = self._counts_at(0)
        self._all_areas = None
        self._pools = None  # made when AP-pool is first asked for

    def _counts_at(self, a):
        """(true positive, ignored), (T, D') booleans of the evaluated records at area range
        ``a``."""
        matched, ignored = (_flags(bits, a) for bits in self._bits)
        return matched & ~ignored, ignored

    def _category_lists(self, a):
        if a != 0:  # the area ranges are evaluated once: not kept
            return RankedLists(*self._counts_at(a), self._ev_starts)
        if self._all_areas is None:
            self._all_areas = RankedLists(self._tp, self._ignored, self._ev_starts)
        return self._all_areas

    def _pool_lists(self, freq):
        """The pools' records (indices into the evaluated ones, concatenated) and their
        lists."""
        if self._pools is None or not np.array_equal(self._pools[0], freq):
            # all categories, then the rare, common and frequent ones; each by score, then
            # image, category and the model's order (the reference concatenates its
            # per-image, per-category lists in that order)
            ev = self._ev
            order = np.lexsort([ev["order"], ev["cat"], ev["image"], -ev["score"]])
            parts = [order] + [order[freq[ev["cat"][order]] == g] for g in "rcf"]
            index = np.concatenate(parts)
            starts = np.r_[0, np.cumsum([len(x) for x in parts])]
            self._pools = freq, index, RankedLists(self._tp[:, index], self._ignored[:, index],
                                                   starts)
        return self._pools[1:]

    def copies_in_top_k(self, copies, k):
        """Copies of each record that stay in the top ``k`` of its category."""
        total = np.r_[0, np.cumsum(copies)]
        before = total[:-1] - np.repeat(total[self.starts[:-1]], np.diff(self.starts))
        return np.clip(k - before, 0, copies)

    def average_precision(self, num_gt, frequencies, metrics=("fixed", "pool"), copies=None,
                          all_areas=True):
        """
        AP-fixed and AP-pool (the keys of ``fixed_and_pooled_ap``; without the area ranges
        small, medium and large unless ``all_areas``).

        Args:
            num_gt (ndarray[K, A]): objects that count per category and area range.
            frequencies (list[str]): "r", "c" or "f" per category.
            copies (ndarray[D] int or None): copies of each record (in ``self.records``'s
                order), after any top-K cut; None: one each.
        """
        num_cats = num_gt.shape[0]
        freq = np.asarray(frequencies)
        w = (np.ones(len(self._evaluated), np.int64) if copies is None
             else copies[self._evaluated])
        t50, t75 = int(np.argmin(abs(IOU_THRS - 0.5))), int(np.argmin(abs(IOU_THRS - 0.75)))
        out = {}
        if "fixed" in metrics:
            precision = np.empty((T, len(REC_THRS), num_cats, A))
            for a in range(A if all_areas else 1):
                p = self._category_lists(a).precision(w, np.maximum(num_gt[:, a], 1))
                precision[:, :, :, a] = p.transpose(0, 2, 1)
                # categories where nothing counts are skipped, as lvis-api skips them (-1)
                precision[:, :, num_gt[:, a] == 0, a] = -1
            out["AP-fixed"] = _mean(precision[:, :, :, 0])
            out["AP50-fixed"] = _mean(precision[t50, :, :, 0])
            out["AP75-fixed"] = _mean(precision[t75, :, :, 0])
            if all_areas:
                for a, label in zip(range(1, A), "sml"):
                    out[f"AP{label}-fixed"] = _mean(precision[:, :, :, a])
            for g in "rcf":
                out[f"AP{g}-fixed"] = _mean(precision[:, :, freq == g, 0])
        if "pool" in metrics:
            index, lists = self._pool_lists(freq)
            n = [int(num_gt[:, 0].sum())] + [int(num_gt[freq == g, 0].sum()) for g in "rcf"]
            p = lists.precision(w[index], np.maximum(n, 1))
            for i, pool in enumerate(("", "r", "c", "f")):
                out[f"AP{pool}-pool"] = _mean(p[:, i]) if n[i] else -1.0
            out["AP50-pool"] = _mean(p[t50, 0]) if n[0] else -1.0
            out["AP75-pool"] = _mean(p[t75, 0]) if n[0] else -1.0
        return out


def fixed_and_pooled_ap(records, num_gt, frequencies, metrics=("fixed", "pool")):
    """
    AP-fixed and AP-pool from the top-K records of every category (``MatchRecords.records()``
    merged over processes and cut again).

    Args:
        records (ndarray of RECORD): the kept detections.
        num_gt (ndarray[K, A]): ``num_gt_per_category``.
        frequencies (list[str]): "r", "c" or "f" per category (in record index order).
        metrics: which of "fixed" and "pool".
    Returns:
        dict: for "fixed" ``AP-fixed AP50-fixed AP75-fixed APs-fixed APm-fixed APl-fixed
        APr-fixed APc-fixed APf-fixed``; for "pool" ``AP-pool AP50-pool AP75-pool APr-pool
        APc-pool APf-pool``; fractions in [0, 1], -1 where nothing counts (as lvis-api).
    """
    return RankedRecords(records, num_gt.shape[0]).average_precision(num_gt, frequencies,
                                                                     metrics)


def reliability(records, bins=10, iou=0.5):
    """
    Precision against score, all categories pooled: what AP-pool rewards, drawn. The records
    that count at IoU ``iou`` (evaluated, not ignored; area "all") are put in ``bins`` equal
    bins of the score over [0, 1]; per bin, how many, their mean score and the fraction of them
    matched (the bin's precision). A score that is comparable across classes has a precision
    that grows with it, a calibrated one lies on the diagonal.

    Returns:
        dict of ndarrays ``edges`` (bins + 1), ``count``, ``mean_score``, ``precision`` (NaN in
        an empty bin), ``ece``: the count-weighted mean of |precision - mean score| over the
        bins (the expected calibration error of the score read as a precision), and
        ``bin_error``: the same mean with every non-empty bin weighted alike (at a low score
        threshold most detections sit in the lowest bin, where every score is near its
        precision, and the ECE says little about the high scores that decide AP-pool).
    """
    t = int(np.argmin(abs(IOU_THRS - iou)))
    if not math.isclose(IOU_THRS[t], iou):
        raise ValueError(f"iou={iou}: not one of the evaluation's thresholds {IOU_THRS.tolist()}")
    bit = np.uint64(1) << np.uint64(t * A)  # area range 0, "all"
    rec = records[records["evaluated"]]
    rec = rec[(rec["ignored"] & bit) == 0]
    score, tp = rec["score"], (rec["matched"] & bit) != 0
    index = np.clip((score * bins).astype(np.int64), 0, bins - 1)  # a score of 1: the last bin
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(index, weights=score, minlength=bins) / count
        precision = np.bincount(index, weights=tp, minlength=bins) / count
    full = count > 0
    gap = abs(precision[full] - mean_score[full])
    return {"edges": np.linspace(0.0, 1.0, bins + 1), "count": count,
            "mean_score": mean_score, "precision": precision,
            "ece": float(np.sum(count[full] * gap) / max(1, count.sum())),
            "bin_error": float(gap.mean()) if gap.size else 0.0}


def gt_counts_per_image(annotations, cat_ids, image_ids):
    """(I, K, A) objects that count per image, category and area range (``_counted``); dense,
    for evaluation sets of the embedded size."""
    cat_ids, image_ids = np.asarray(sorted(cat_ids)), np.asarray(sorted(image_ids))
    out = np.zeros((len(image_ids), len(cat_ids), A), dtype=np.int64)
    if not annotations:
        return out
    img = np.searchsorted(image_ids, [a["image_id"] for a in annotations])
    cat = np.searchsorted(cat_ids, [a["category_id"] for a in annotations])
    for i, keep in enumerate(_counted(annotations)):
        np.add.at(out[:, :, i], (img[keep], cat[keep]), 1)
    return out


def bootstrap_samples(records, gt_counts, image_ids, frequencies, k,
                      metrics=("AP-fixed", "AP-pool"), n_bootstrap=1000, seed=0):
    """
    AP-fixed / AP-pool (in percent) of one method's match records on the evaluation set and on
    ``n_bootstrap`` resamples of its images (each drawn image with all its objects and
    detections). The resamples depend on ``seed`` and the set only, so two methods' samples of
    the same seed pair up: their differences give a paired interval (``bootstrap_difference``)
    and each method is evaluated once however many it is compared with. Resamples the top-K
    records that were kept: exact where no category reached K (the embedded sets), an
    approximation otherwise. The records are ranked once; a resample gives each as many
    copies as its image was drawn (``RankedRecords``).

    Returns:
        {metric: ndarray[n_bootstrap + 1]}: the whole set's value first, then the resamples'.
    """
    image_ids = np.asarray(sorted(image_ids))
    kinds = tuple(sorted({m.split("-")[1] for m in metrics}))
    ranked = RankedRecords(records, gt_counts.shape[1])
    image = ranked.records["image"]
    pos = _positions(image_ids, image, "image id {} of the records is not an image of the "
                     "evaluation set")
    rng = np.random.default_rng(seed)
    out = {m: np.empty(n_bootstrap + 1) for m in metrics}
    for i in range(n_bootstrap + 1):
        mult = np.ones(len(image_ids), np.int64) if i == 0 else np.bincount(
            rng.integers(0, len(image_ids), len(image_ids)), minlength=len(image_ids))
        res = ranked.average_precision(np.tensordot(mult, gt_counts, axes=1), frequencies,
                                       kinds, ranked.copies_in_top_k(mult[pos], k),
                                       all_areas=False)
        for m in metrics:
            out[m][i] = 100 * res[m]
    return out


def paired_interval(samples_a, samples_b):
    """{metric: (difference, lower, upper)}: b - a on the whole set, with the 95% percentile
    interval of the paired resamples' differences (``bootstrap_samples`` of one seed)."""
    out = {}
    for m in samples_a:
        d = samples_b[m] - samples_a[m]
        out[m] = (float(d[0]), float(np.percentile(d[1:], 2.5)),
                  float(np.percentile(d[1:], 97.5)))
    return out


def bootstrap_difference(records_a, records_b, gt_counts, image_ids, frequencies, k,
                         metrics=("AP-fixed", "AP-pool"), n_bootstrap=1000, seed=0):
    """
    Difference (b - a, in percent) of AP-fixed / AP-pool between two methods' match records of
    the same evaluation set, with a 95% percentile interval over ``n_bootstrap`` resamples of
    the images (both methods on the same resampled images: ``bootstrap_samples``).

    Returns:
        {metric: (difference, lower, upper)}
    """
    return paired_interval(*(bootstrap_samples(r, gt_counts, image_ids, frequencies, k, metrics,
                                               n_bootstrap, seed)
                             for r in (records_a, records_b)))
