#!/usr/bin/env python
"""
The evaluation report of any run from its saved results (projects_lda/evaluation/report.py):
per-class AP with r/c/f group and training images (CSV, Markdown), TIDE error breakdown,
sibling-class confusions.

    python tools/eval_report.py --run output/my_run  # after --eval-only with
                                                     # TEST.LVIS_EVAL.WRITE_RESULTS_JSON True
    python tools/eval_report.py --gt val.json --results results.json --out report/
"""
from projects_lda.evaluation.report import main

if __name__ == "__main__":
    main()
