#!/usr/bin/env python
"""Reproduce the paper's LVIS v1 table (R-50 FPN, 12 epochs, baseline and LDA): ``--help``, and
projects_lda/benchmark/reproduce_lvis.py."""
import sys

from projects_lda.benchmark.reproduce_lvis import main

if __name__ == "__main__":
    ret = main()  # the results, or an exit status when the runs cannot start
    sys.exit(ret if isinstance(ret, int) else 0)
