#!/usr/bin/env python
"""
The dataset report: sizes, r/c/f groups, training images per class, repeat-factor sampling at
the config's threshold and others, LDA's importance weights, classes of the evaluation splits
without training images, and a class histogram (projects_lda/app/dataset_report.py).

    python tools/inspect_dataset.py --dataset my_train --config-file CONFIG
    python tools/inspect_dataset.py --json train.json --image-root images/ --eval-json val.json
"""
from projects_lda.app.dataset_report import main

if __name__ == "__main__":
    main()
