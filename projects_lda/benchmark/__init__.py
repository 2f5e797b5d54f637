"""
Measuring the methods: the code behind the tools that README.md and docs/ cite.

* :mod:`.runs`, :mod:`.report`, :mod:`.protocol`, :mod:`.cli`: the long-tail benchmark on the
  embedded dataset (``tools/benchmark.py``): one run and its record, the tables, the tuning
  protocol of docs/benchmark_protocol.md, the command line;
* :mod:`.plot_analysis`: the paper's analysis figures of trained runs (``tools/plot_analysis.py``);
* :mod:`.lvis_rehearsal`: LDA and the peers at LVIS v1's shape without its data
  (``tools/measure.py predictor``, ``step`` and ``configs``);
* :mod:`.reproduce_lvis`: the paper's LVIS v1 table (``tools/reproduce_lvis.py``).

Their defaults name files of the checkout the package is installed from in editable mode (as
tools/setup.sh installs it): configs/ and docs/benchmark/ under :data:`REPO_ROOT`.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
