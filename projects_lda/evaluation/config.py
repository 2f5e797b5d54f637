from detectron2.config import CfgNode as CN


def add_evaluation_config(cfg):
    """Add the keys of the LVIS evaluation (``cfg.TEST.LVIS_EVAL``) to a detectron2 config."""
    cfg.TEST.LVIS_EVAL = CN()
    # Which evaluator computes the LVIS AP of LVIS-type datasets: "hotcoco" = hotcoco's LVIS mode,
    # streamed (each process matches its own images as they are predicted; same numbers as
    # lvis-api, see docs/evaluation.md); "lvis-api" = detectron2's LVISEvaluator (the reference).
    cfg.TEST.LVIS_EVAL.BACKEND = "hotcoco"
    # Also write OUTPUT_DIR/inference/<dataset>/lvis_instances_results.json, the detections in the
    # format of the LVIS evaluation server (top TEST.DETECTIONS_PER_IMAGE per image, every
    # category). Costs a mask encoding per detection and the JSON; off by default. Always written
    # for a dataset without annotations (a test set), where it is the only possible output.
    cfg.TEST.LVIS_EVAL.WRITE_RESULTS_JSON = False
    # The per-image cap of the standard LVIS AP: the top k detections of an image by score over
    # all categories (lvis-api's LVISResults; LVIS: 300). Separate from TEST.DETECTIONS_PER_IMAGE,
    # the model's own cap, which inference for AP-fixed lifts (-1).
    cfg.TEST.LVIS_EVAL.MAX_DETS_PER_IMAGE = 300
    # Which metrics of LVIS-type datasets are computed (hotcoco backend), any of: "standard" =
    # LVIS AP (capped per image; the one published numbers use), "fixed" = AP-fixed, "pool" =
    # AP-pool (Dave et al. 2021: no per-image cap, the top DETECTIONS_PER_CATEGORY detections
    # of each category over the set; AP-pool ranks all categories' detections together).
    cfg.TEST.LVIS_EVAL.METRICS = ("standard",)
    # K of AP-fixed and AP-pool: detections kept per category over the whole evaluation set
    # (Dave et al.: 10,000 for LVIS v1 val).
    cfg.TEST.LVIS_EVAL.DETECTIONS_PER_CATEGORY = 10000
    # Also write the evaluation report (hotcoco backend): per-class AP with r/c/f group and
    # training images (CSV and Markdown), the TIDE error breakdown and the sibling-class
    # confusions, into OUTPUT_DIR/inference/<dataset>/report/ (projects_lda/evaluation/report.py;
    # tools/eval_report.py writes it later from a run's saved results). Writes the results JSON.
    cfg.TEST.LVIS_EVAL.REPORT = False
    # Which protocol the hotcoco backend's AP follows: "lvis" = lvis-api's (300 detections per
    # image over all categories, empty detections left out, APr/APc/APf); "coco" = pycocotools'
    # COCOeval itself (100 detections per image and category, empty detections are false
    # positives; AP, AP50, AP75, APs, APm, APl), for exhaustive files only
    # (projects_lda/evaluation/coco_protocol.py). tools/eval_report.py --protocol likewise.
    cfg.TEST.LVIS_EVAL.PROTOCOL = "lvis"
    return cfg
