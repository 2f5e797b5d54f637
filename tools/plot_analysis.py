#!/usr/bin/env python
"""Analysis figures of the LDA paper for trained detectors: ``--help``, and
projects_lda/benchmark/plot_analysis.py."""
from projects_lda.benchmark.plot_analysis import main

if __name__ == "__main__":
    main()
