#!/usr/bin/env python
"""Reproduce the paper's LVIS v1 table (R-50 FPN, 12 epochs, baseline and LDA): ``--help``, and
projects_lda/benchmark/reproduce_lvis.py."""
import sys
from pathlib import Path

from projects_lda.benchmark.reproduce_lvis import main

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its train_net.py and configs/

if __name__ == "__main__":
    ret = main(root=str(ROOT))  # the results, or an exit status when the runs cannot start
    sys.exit(ret if isinstance(ret, int) else 0)
