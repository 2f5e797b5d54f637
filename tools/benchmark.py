#!/usr/bin/env python
"""Long-tail benchmark and its tuning protocol: ``--help``, and projects_lda/benchmark/cli.py."""
from projects_lda.benchmark.cli import main

if __name__ == "__main__":
    main()
