"""
LVIS evaluation on hotcoco's LVIS mode, streamed: a detectron2 ``DatasetEvaluator`` with the
results of detectron2's ``LVISEvaluator`` (lvis-api), computed without keeping the detections.

Each process matches the images it predicts as they come (``hotcoco.StreamingEval``) and keeps
only the per-image match results; ``evaluate()`` merges those on the main process. Per image,
as lvis-api with detectron2's ``LVISEvaluator``:

* the ``max_dets_per_image`` highest-scoring detections are kept (``LVISResults``' cap, ties in
  the model's order), whatever their category;
* of those, detections of a category that is neither annotated in the image nor in its
  ``neg_category_ids`` are dropped before matching (``LVISEval._prepare`` ignores them). They
  cannot change any number, so their boxes are not converted and their masks not RLE-encoded.
  That is a federated file's rule; an exhaustive file (no LVIS per-image lists, e.g. COCO
  format) has every category it does not annotate in an image as negative there, so every
  detection counts, as in pycocotools' COCOeval (:mod:`projects_lda.evaluation.ground_truth`);
* segm results carry no ``bbox``, so a detection's area is its mask area (detectron2 removes
  the box for the same reason).

Images of the dataset that no process predicted count as images without detections (lvis-api
evaluates every image of the ground truth). The metrics are reported in percent under the keys
of detectron2's ``LVISEvaluator``.

That is the LVIS protocol. With ``protocol="coco"`` (an exhaustive file only) the evaluator
keeps every detection as a results-file row instead and scores them at the end with
pycocotools' COCOeval (:mod:`.coco_protocol`). Either way the file's categories can be checked
against the model's first (``model_classes``, :func:`check_categories`).

Asked for (``metrics``), AP-fixed and AP-pool (``large_vocab.py``) are computed beside them, from
every detection of an image (no per-image cap): each image is matched on its own and each
process keeps per category only the match records that can still be in the top K.
"""
import copy
import functools
import itertools
import json
import logging
import os
import time
from collections import OrderedDict

import numpy as np
import torch

import detectron2.utils.comm as comm
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

from . import large_vocab
from .coco_protocol import check_exhaustive, coco_ground_truth, coco_metrics, protocol_line
from .ground_truth import categories_with_frequency, evaluated_image, evaluation_kind, with_area
from .report import RESULTS_JSON, training_image_counts, write_evaluation_report

__all__ = ["HotcocoLVISEvaluator", "LVIS_METRICS", "METRICS", "select_detections",
           "check_categories"]

# the keys of detectron2's LVISEvaluator, per task
LVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
# what ``metrics`` may ask for: LVIS AP (300 detections per image), AP-fixed, AP-pool
METRICS = ("standard", "fixed", "pool")
TIMING_FILE = "evaluation_timing.json"
# AP-fixed / AP-pool: the kept top-K match records of a task (large_vocab.RECORD)
MATCH_RECORDS = "lvis_match_records_{task}.npy"

logger = logging.getLogger(__name__)


def select_detections(scores, classes, max_dets, relevant):
    """
    Indices of the detections of one image that can change an LVIS metric, in the model's order.

    Args:
        scores (Tensor[N]), classes (Tensor[N] of dataset category ids):
        max_dets (int): lvis-api's per-image cap (top ``max_dets`` scores over all categories;
            a negative value keeps all).
        relevant (Tensor[M]): the image's annotated and negative category ids.

    Returns:
        (top, kept): ``top`` the indices under the cap (what lvis-api's ``LVISResults`` keeps),
        ``kept`` those of them whose category is in ``relevant``.
    """
    n = len(scores)
    if 0 <= max_dets < n:
        # Python's sorted(reverse=True), as lvis-api uses it, keeps ties in their order
        order = torch.sort(scores, descending=True, stable=True).indices[:max_dets]
        top = torch.sort(order).values
    else:
        top = torch.arange(n)
    kept = top[torch.isin(classes[top], relevant)]
    return top, kept


class HotcocoLVISEvaluator(DatasetEvaluator):
    """
    Box and mask AP of an LVIS-format dataset with lvis-api's rules (federated negatives and
    not-exhaustive categories, 300 detections per image, r/c/f groups), computed by hotcoco.
    """

    def __init__(
        self,
        dataset_name,
        tasks=None,
        distributed=True,
        output_dir=None,
        *,
        max_dets_per_image=300,
        write_results_json=False,
        metrics=("standard",),
        dets_per_category=10000,
        federated=None,
        frequency=None,
        report=False,
        train_dataset=None,
        protocol="lvis",
        model_classes=None,
    ):
        """
        Args:
            dataset_name (str): a registered dataset whose metadata has ``json_file``.
            tasks (tuple[str] or None): "bbox" and/or "segm"; None: "segm" as well when the
                predictions have masks (decided on the first image that has detections).
            distributed (bool): merge the match results of all processes on the main one.
            output_dir (str or None): where the per-category results (``lvis_eval_<task>.json``),
                the timing file and, if asked, the results JSON are written.
            max_dets_per_image (int): detections kept per image (LVIS: 300; -1 keeps all).
            write_results_json (bool): also write every kept detection in the LVIS server's
                format (``lvis_instances_results.json``), as detectron2's LVISEvaluator does.
            metrics (tuple[str]): any of ``METRICS``: "standard" (LVIS AP under the keys of
                ``LVIS_METRICS``), "fixed" (``AP-fixed``, ``APr-fixed``, ...), "pool"
                (``AP-pool``, ``APr-pool``, ...).
            dets_per_category (int): K of AP-fixed and AP-pool (LVIS: 10,000).
            federated (bool or None): how the file is evaluated (module docstring); None: the
                kind the dataset was registered with (metadata ``annotation_kind``), else the
                file's (:func:`projects_lda.data.validation.annotation_kind`).
            frequency (dict, callable or None): {file category id: "r"/"c"/"f"} (or a callable
                returning it, called only when needed) for the categories without their own
                ``frequency``: the training set's groups
                (:func:`ground_truth.training_frequencies`).
            report (bool): after the evaluation, write the evaluation report (per-class AP,
                TIDE, sibling confusions: :mod:`projects_lda.evaluation.report`) into
                ``output_dir/report``; the results JSON is then written too.
            train_dataset (str or None): the training set the report takes its per-class
                training image counts from.
            protocol (str): "lvis" (the numbers of lvis-api) or "coco" (those of pycocotools'
                COCOeval, on an exhaustive file only: :mod:`.coco_protocol`).
            model_classes (ClassNames or None): the model's classes (names and file category
                ids by contiguous id: the checkpoint's, else the training set's). Given, the
                file's categories are checked against them (:func:`check_categories`) and
                predicted class ``k`` is the model's ``k``-th id; None: the file's ``k``-th id.
        """
        import hotcoco  # a required dependency (setup.cfg); imported here to keep import light

        self._hotcoco = hotcoco
        self._dataset_name = dataset_name
        self._tasks = tuple(tasks) if tasks else None
        self._distributed = distributed
        self._output_dir = output_dir
        self._max_dets = -1 if max_dets_per_image is None else int(max_dets_per_image)
        metrics = tuple(metrics)
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"TEST.LVIS_EVAL.METRICS: {unknown or 'nothing'} asked for; choose "
                             f"one or more of {METRICS}")
        self._metrics = metrics
        self._large_vocab = tuple(m for m in metrics if m != "standard")
        self._dets_per_category = int(dets_per_category)
        if self._large_vocab and self._dets_per_category <= 0:
            raise ValueError("TEST.LVIS_EVAL.DETECTIONS_PER_CATEGORY must be positive, got "
                             f"{dets_per_category}")
        self._metadata = MetadataCatalog.get(dataset_name)
        json_file = self._metadata.get("json_file", None)
        if json_file is None:
            raise ValueError(f"dataset {dataset_name!r}: its metadata has no json_file to "
                             "evaluate against")
        json_file = PathManager.get_local_path(json_file)
        self._gt = hotcoco.COCO(json_file)
        self._json_file = json_file
        self._img_ids = set(self._gt.get_img_ids())
        if federated is None:  # the kind forced at registration, else the file's rule
            federated = self._metadata.get("annotation_kind", None)
        self._federated = evaluation_kind(
            self._gt.load_imgs(list(self._img_ids)), json_file, federated).federated
        check_exhaustive(protocol, self._federated, f"dataset {dataset_name!r} ({json_file})")
        if protocol == "coco" and self._large_vocab:
            raise ValueError(f"TEST.LVIS_EVAL.METRICS {metrics}: AP-fixed and AP-pool are "
                             "LVIS metrics; with TEST.LVIS_EVAL.PROTOCOL coco ask for "
                             "('standard',) only")
        self._protocol = protocol
        categories = self._gt.load_cats(self._gt.get_cat_ids())
        lacking = any("frequency" not in c for c in categories)
        if lacking and callable(frequency):
            frequency = frequency()
        self._categories = categories_with_frequency(
            categories, self._gt.load_anns(self._gt.get_ann_ids()) if lacking else (),
            frequency, json_file)
        self._category = {c["id"]: c for c in self._categories}
        self._all_cat_ids = sorted(self._category)
        self._do_evaluation = len(self._gt.get_ann_ids()) > 0
        if not self._do_evaluation:
            logger.warning("%s has no annotations: %r is evaluated as a test set, which gives "
                           "no metrics; its detections are written to %s", json_file,
                           dataset_name, os.path.join(output_dir or "(no output_dir)",
                                                      RESULTS_JSON))
        self._report = bool(report) and self._do_evaluation and output_dir is not None
        self._train_dataset = train_dataset
        self._write_json = bool(write_results_json) or not self._do_evaluation or self._report
        # COCOeval reads every detection at the end: they are kept (as results-file rows)
        self._keep_rows = self._write_json or (protocol == "coco" and self._do_evaluation)
        self._known_ids = None  # the file's category ids when the model has others besides
        if model_classes is not None:
            check_categories(model_classes, self._categories, json_file)
            table = torch.tensor(model_classes.dataset_ids, dtype=torch.long)
            if set(model_classes.dataset_ids) != set(self._category):
                self._known_ids = torch.tensor(self._all_cat_ids, dtype=torch.long)
        elif hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
            mapping = self._metadata.thing_dataset_id_to_contiguous_id
            table = torch.full((max(mapping.values()) + 1,), -1, dtype=torch.long)
            for dataset_id, contiguous in mapping.items():
                table[contiguous] = dataset_id
        else:  # LVIS: contiguous id k is category k + 1
            table = torch.tensor([c["id"] for c in self._categories]).sort().values
            if not torch.equal(table, torch.arange(1, len(table) + 1)):
                raise ValueError(f"{json_file}: category ids are not 1..{len(table)}; register "
                                 "the dataset with thing_dataset_id_to_contiguous_id")
        self._class_to_id = table
        self.reset()

    def reset(self):
        self._streams = None  # created with the tasks, on the first image with detections
        self._seen = []
        self._pending_empty = []  # images without detections met before the tasks were known
        self._json_rows = []
        self._records = {}  # task -> large_vocab.MatchRecords (AP-fixed / AP-pool)
        self._time = {"first_process": None, "process_s": 0.0, "last_process_end": None}

    # ------------------------------------------------------------------------------ process
    def _start(self, has_masks):
        tasks = self._tasks or (("bbox", "segm") if has_masks else ("bbox",))
        self._streams = {
            t: self._hotcoco.StreamingEval(self._categories, t, lvis_style=True) for t in tasks
        }
        if self._large_vocab:
            cat_ids = [c["id"] for c in self._categories]
            self._records = {t: large_vocab.MatchRecords(cat_ids, self._dets_per_category)
                             for t in tasks}

    def _image(self, image_id, gts):
        """The image entry as evaluated (ground_truth.evaluated_image), ``gts`` its objects."""
        if image_id not in self._img_ids:
            raise ValueError(f"image_id {image_id!r} is not an image of {self._dataset_name!r} "
                             f"({self._json_file})")
        return evaluated_image(self._gt.load_imgs([image_id])[0],
                               [a["category_id"] for a in gts], self._all_cat_ids,
                               self._federated)

    def _dataset_ids(self, image_id, classes):
        bad = (classes < 0) | (classes >= len(self._class_to_id))
        ids = self._class_to_id[classes.clamp(0, len(self._class_to_id) - 1)]
        bad |= ids < 0
        if bad.any():
            raise ValueError(
                f"image {image_id}: predicted class {int(classes[bad][0])} has no category in "
                f"{self._dataset_name!r} ({len(self._categories)} categories); is "
                "MODEL.ROI_HEADS.NUM_CLASSES the dataset's number of classes?")
        return ids

    def process(self, inputs, outputs):
        start = time.perf_counter()
        if self._time["first_process"] is None:
            self._time["first_process"] = start
        for input, output in zip(inputs, outputs):
            self._process_one(input["image_id"], output["instances"].to("cpu"))
        end = time.perf_counter()
        self._time["process_s"] += end - start
        self._time["last_process_end"] = end

    def _process_one(self, image_id, instances):
        gts = self._gts(image_id)
        img = self._image(image_id, gts)
        self._seen.append(image_id)
        classes = self._dataset_ids(image_id, instances.pred_classes)
        if self._known_ids is not None:  # classes of the model this file does not have
            known = torch.isin(classes, self._known_ids)
            if not known.all():
                instances, classes = instances[known], classes[known]
        if self._protocol == "coco":  # COCOeval reads them all at the end
            if self._keep_rows:
                self._json_rows.extend(_rows(instances, image_id, classes))
            return
        if self._streams is None:
            if len(instances) == 0 and self._tasks is None:
                self._pending_empty.append(image_id)
                return
            self._start(instances.has("pred_masks"))
            for empty in self._pending_empty:
                self._update_empty(empty)
            self._pending_empty = []
        relevant = torch.tensor(
            sorted({a["category_id"] for a in gts} | set(img["neg_category_ids"])),
            dtype=torch.long)
        top, kept = select_detections(instances.scores, classes, self._max_dets, relevant)
        if self._write_json:
            capped = instances if len(top) == len(instances) else instances[top]  # no copy
            self._json_rows.extend(_rows(capped, image_id, classes[top]))
        if not self._do_evaluation:  # a test set: the results JSON is the only output
            return
        # AP-fixed / AP-pool read every detection of the image, the standard AP those under
        # the cap: the detections that can count in either are converted once
        evaluated = torch.isin(classes, relevant).nonzero().flatten() if self._large_vocab \
            else kept
        for task, stream in self._streams.items():
            idx, dets = self._converted(task, image_id, instances, classes, evaluated)
            if "standard" in self._metrics:
                stream.update([img], gts, _subset(dets, idx, kept[torch.isin(kept, idx)]))
            if self._large_vocab:
                self._add_records(task, img, gts, instances, classes, idx, dets)

    def _converted(self, task, image_id, instances, classes, idx):
        """
        The detections ``idx`` in hotcoco's input format for ``task``: an (N, 7) array for bbox,
        dicts with an RLE and no bbox for segm (so that the area is the mask's). Returns the
        indices converted and their conversion: those of area 0 are left out, as lvis-api
        leaves them out (``LVISEval._prepare`` reads the results through ``LVIS.get_ann_ids``,
        which keeps ``area > 0``) where hotcoco, as pycocotools, would count them as false
        positives. A Mask R-CNN pastes a few empty masks per thousand detections.
        """
        if task == "bbox":
            boxes = BoxMode.convert(instances.pred_boxes.tensor[idx].numpy(),
                                    BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
            keep = torch.from_numpy(boxes[:, 2] * boxes[:, 3] > 0)
            idx, boxes = idx[keep], boxes[keep.numpy()]
            dets = np.empty((len(idx), 7))
            dets[:, 0] = image_id
            dets[:, 1:5] = boxes
            dets[:, 5] = instances.scores[idx].numpy()
            dets[:, 6] = classes[idx].numpy()
            return idx, dets
        if not instances.has("pred_masks"):
            raise ValueError(f"image {image_id}: segm evaluation asked for, but the "
                             "predictions have no pred_masks")
        masks = instances.pred_masks
        if masks.ndim == 4:  # (N, 1, H, W)
            masks = masks[:, 0]
        masks = masks[idx]
        keep = masks.flatten(1).any(1) if len(idx) else torch.zeros(0, dtype=torch.bool)
        idx, masks = idx[keep], masks[keep].numpy()
        encode = self._hotcoco.mask.encode  # (H, W) C-ordered masks, as they are
        return idx, [
            {"image_id": image_id, "category_id": c, "segmentation": encode(masks[i]),
             "score": s}
            for i, (s, c) in enumerate(zip(instances.scores[idx].tolist(),
                                           classes[idx].tolist()))
        ]

    def _add_records(self, task, img, gts, instances, classes, evaluated, dets):
        """Match records of the image: ``evaluated`` (converted as ``dets``) matched by hotcoco
        on this image alone; every other detection (a category the image is not evaluated for,
        an empty mask) takes its place in the top K of its category and is then ignored, as in
        the reference's results file."""
        image_id = img["id"]
        records = self._records[task]
        others = torch.ones(len(instances), dtype=torch.bool)
        others[evaluated] = False
        others = others.nonzero().flatten()
        records.add(large_vocab.unevaluated_records(
            records.cat_index, classes[others].numpy(), instances.scores[others].double().numpy(),
            image_id, others.numpy()))
        if len(evaluated) == 0:
            return
        # a ground truth of this image alone: the same matches as the whole set's restricted to
        # the image, without hotcoco's per-category work over every image (9x faster at LVIS v1
        # val size)
        hc = self._hotcoco
        cat_ids = sorted({a["category_id"] for a in gts} | set(classes[evaluated].tolist()))
        gt = hc.COCO({"images": [img], "annotations": gts,
                      "categories": [self._category[c] for c in cat_ids]})
        ev = hc.LVISeval(gt, hc.LVISResults(gt, dets, max_dets=-1), task)
        params = ev.params
        params.img_ids = [image_id]
        params.cat_ids = cat_ids
        ev.params = params
        ev.evaluate()
        records.add(large_vocab.records_from_eval_imgs(
            ev.eval_imgs, records.cat_index, image_id, len(evaluated), evaluated.numpy()))

    def _gts(self, image_id):
        if image_id not in self._img_ids:
            return []  # _image raises, naming the image
        img = self._gt.load_imgs([image_id])[0]
        return [with_area(a, (img["height"], img["width"]))
                for a in self._gt.load_anns(self._gt.get_ann_ids(img_ids=[image_id]))]

    def _update_empty(self, image_id):
        if "standard" not in self._metrics:
            return
        gts = self._gts(image_id)
        img = self._image(image_id, gts)
        for stream in self._streams.values():
            stream.update([img], gts, np.zeros((0, 7)))

    # ------------------------------------------------------------------------------ evaluate
    def _timing(self, num_images, evaluate_s):
        t = self._time
        loop = (t["last_process_end"] - t["first_process"]) if t["first_process"] else 0.0
        return {
            "num_images": num_images,
            # wall time of the inference loop without the evaluator's own work, per image of
            # this process (from its first to its last image; data loading included)
            "inference_s_per_image": (loop - t["process_s"]) / max(len(self._seen) - 1, 1),
            "evaluator_process_s": t["process_s"],
            "evaluate_s": evaluate_s,
        }

    def evaluate(self):
        start = time.perf_counter()
        payload = {
            "streams": None if self._streams is None
            else {t: s.to_bytes() for t, s in self._streams.items()},
            "pending_empty": self._pending_empty,
            "seen": self._seen,
            "json": self._json_rows,
            "records": {t: r.records() for t, r in self._records.items()},
        }
        if self._distributed:
            comm.synchronize()
            payloads = comm.gather(payload, dst=0)
            if not comm.is_main_process():
                return
        else:
            payloads = [payload]
        seen = list(itertools.chain.from_iterable(p["seen"] for p in payloads))
        if not seen:
            logger.warning("[HotcocoLVISEvaluator] Did not receive valid predictions.")
            return {}
        if len(set(seen)) != len(seen):
            dup = sorted({i for i in seen if seen.count(i) > 1})[:5]
            raise ValueError(f"images evaluated more than once (by one or several processes): "
                             f"{dup}")
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
        if self._write_json:
            self._save_json(list(itertools.chain.from_iterable(p["json"] for p in payloads)))
        results = OrderedDict()
        if self._do_evaluation and self._protocol == "coco":
            results = self._coco_evaluate(
                list(itertools.chain.from_iterable(p["json"] for p in payloads)))
        elif self._do_evaluation:
            results = self._merge_and_evaluate(payloads, set(seen))
        if self._report and results:
            self._write_report(list(results))
        if self._output_dir:
            timing = self._timing(len(seen), time.perf_counter() - start)
            with PathManager.open(os.path.join(self._output_dir, TIMING_FILE), "w") as f:
                json.dump(timing, f, indent=2)
        return copy.deepcopy(results)

    def _coco_evaluate(self, rows):
        """COCOeval on every detection (:mod:`.coco_protocol`); images without a detection are
        in the ground truth, so their objects count as missed."""
        with_masks = any("segmentation" in r for r in rows)
        tasks = self._tasks or (("bbox", "segm") if with_masks else ("bbox",))
        dataset = coco_ground_truth(self._json_file)
        results = OrderedDict()
        for task in tasks:
            res, _ = coco_metrics(dataset, rows, task)
            logger.info("Evaluation results for %s, %s: \n%s", task,
                        protocol_line("coco"), create_small_table(res))
            results[task] = res
        return results

    def _write_report(self, tasks):
        out = os.path.join(self._output_dir, "report")
        write_evaluation_report(
            self._json_file, os.path.join(self._output_dir, RESULTS_JSON), out, tasks=tasks,
            federated=self._federated,
            frequency={c["id"]: c["frequency"] for c in self._categories},
            train_counts=training_image_counts(self._train_dataset),
            max_dets=self._max_dets, protocol=self._protocol)
        logger.info("Evaluation report written to %s", out)

    def _save_json(self, rows):
        if not self._output_dir:
            logger.warning("No output_dir: the LVIS results JSON is not written")
            return
        path = os.path.join(self._output_dir, RESULTS_JSON)
        logger.info("Saving results to %s", path)
        with PathManager.open(path, "w") as f:
            json.dump(rows, f)

    def _merge_and_evaluate(self, payloads, seen):
        shards = [p["streams"] for p in payloads if p["streams"] is not None]
        if not shards:  # no image of any process had a detection
            self._start(has_masks=False)
            shards = [{t: s.to_bytes() for t, s in self._streams.items()}]
        tasks = sorted(shards[0])
        results = OrderedDict()
        unseen = self._img_ids - seen
        if unseen:
            logger.warning("%d images of %s were not predicted; their ground truth counts "
                           "as missed, as in lvis-api", len(unseen), self._dataset_name)
        for task in tasks:
            res = {}
            if "standard" in self._metrics:
                res.update(self._standard(task, shards, payloads, unseen))
            if self._large_vocab:
                res.update(self._fixed_and_pooled(task, payloads))
            logger.info("Evaluation results for %s, %s: \n%s", task, protocol_line("lvis"),
                        create_small_table(res))
            results[task] = res
        return results

    def _standard(self, task, shards, payloads, unseen):
        hotcoco = self._hotcoco
        merged = hotcoco.StreamingEval.merge(
            [hotcoco.StreamingEval.from_bytes(s[task]) for s in shards])
        # images that had no detection before the tasks were known, and images no process
        # predicted: lvis-api evaluates every image, their ground truth counts as missed
        empty = {i for p in payloads for i in p["pending_empty"]}
        for image_id in sorted(empty | unseen):
            gts = self._gts(image_id)
            merged.update([self._image(image_id, gts)], gts, np.zeros((0, 7)))
        ev = merged.finalize()
        ev.accumulate()
        ev.summarize()
        stats = ev.get_results()
        if self._output_dir:
            ev.save_results(os.path.join(self._output_dir, f"lvis_eval_{task}.json"),
                            per_class=True)
        return {m: float(stats[m] * 100) for m in LVIS_METRICS}

    @functools.cached_property
    def _num_gt(self):
        """(K, A) objects that count per category and area range; the same for both tasks."""
        return large_vocab.num_gt_per_category(self._gt.load_anns(self._gt.get_ann_ids()),
                                               [c["id"] for c in self._categories])

    def _fixed_and_pooled(self, task, payloads):
        parts = [p["records"][task] for p in payloads if task in p["records"]]
        records = large_vocab.top_k_per_category(
            np.concatenate(parts) if parts else np.zeros(0, large_vocab.RECORD),
            self._dets_per_category)
        cats = sorted(self._categories, key=lambda c: c["id"])
        per_cat = np.bincount(records["cat"], minlength=len(cats))
        short = int((per_cat < self._dets_per_category).sum())
        if short:
            # as the reference script warns: standard inference leaves most categories short
            # of K, which lowers AP-fixed (docs/evaluation.md: inference for AP-fixed)
            logger.warning("%s: %d of %d categories have fewer than %d detections over the set "
                           "(median %d)", task, short, len(cats), self._dets_per_category,
                           int(np.median(per_cat)))
        res = large_vocab.fixed_and_pooled_ap(
            records, self._num_gt, [c.get("frequency", "f") for c in cats], self._large_vocab)
        if self._output_dir:  # for the benchmark's bootstrap intervals of differences
            np.save(os.path.join(self._output_dir, MATCH_RECORDS.format(task=task)), records)
        return {k: float(v * 100) for k, v in res.items()}


def _rows(instances, image_id, classes):
    """Results-file rows (detectron2's ``instances_to_coco_json``) with the file's category ids
    ``classes``."""
    rows = instances_to_coco_json(instances, image_id)
    for row, cat in zip(rows, classes.tolist()):
        row["category_id"] = cat
    return rows


def check_categories(model_classes, categories, json_file):
    """
    Raises unless every category of the evaluated file is one of the model's, by id, with the
    same name; the file may have fewer categories, in any order (they are matched by id).
    ``model_classes``: a :class:`~projects_lda.data.class_names.ClassNames` with a ``source``
    attribute naming where it comes from, or without one.
    """
    source = getattr(model_classes, "source", "the model")
    names = dict(zip(model_classes.dataset_ids, model_classes.thing_classes))
    for cat in sorted(categories, key=lambda c: c["id"]):
        if cat["id"] not in names:
            raise ValueError(
                f"{json_file}: category id {cat['id']} ({cat['name']!r}) is not among the "
                f"{len(names)} categories of {source}: the model cannot predict it, so its AP "
                "would be 0; evaluate on a file with the model's categories")
        if names[cat["id"]] != cat["name"]:
            raise ValueError(
                f"{json_file}: category id {cat['id']} is {cat['name']!r} there but "
                f"{names[cat['id']]!r} in {source}: the file and the model number their "
                "categories differently")


def _subset(dets, idx, sub):
    """The rows of ``dets`` (converted for the detections ``idx``) of the detections ``sub``,
    a subset of ``idx``."""
    if len(sub) == 0:
        return np.zeros((0, 7))
    if len(sub) == len(idx):
        return dets
    pos = torch.searchsorted(idx, sub).tolist()
    return dets[pos] if isinstance(dets, np.ndarray) else [dets[i] for i in pos]
