#!/usr/bin/env python
"""Long-tail benchmark and its tuning protocol: ``--help``, and projects_lda/benchmark/cli.py."""
from pathlib import Path

from projects_lda.benchmark.cli import main

ROOT = Path(__file__).resolve().parents[1]  # the checkout: its configs/ and docs/benchmark/

if __name__ == "__main__":
    main(root=str(ROOT))
