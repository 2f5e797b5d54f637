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
    return cfg
