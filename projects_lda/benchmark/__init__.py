"""
Measuring the methods: the code behind the tools that README.md and docs/ cite.

* :mod:`.runs`, :mod:`.report`, :mod:`.protocol`, :mod:`.cli`: the long-tail benchmark on the
  embedded dataset (``tools/benchmark.py``): one run and its record, the tables, the tuning
  protocol of docs/benchmark_protocol.md, the command line;
* :mod:`.plot_analysis`: the paper's analysis figures of trained runs (``tools/plot_analysis.py``);
* :mod:`.lvis_rehearsal`: LDA and the peers at LVIS v1's shape without its data
  (``tools/measure.py predictor``, ``step`` and ``configs``); :mod:`.host_syncs`: the host
  synchronisations and dispatched operators of a training step (``tools/measure.py syncs``,
  ``profile``);
* :mod:`.reproduce_lvis`: the paper's LVIS v1 table (``tools/reproduce_lvis.py``).

The configs, records and settings files they read are under a checkout's ``configs/`` and
``docs/benchmark/``: the entry points take that checkout as an argument (``root``; relative paths
are the working directory's), and the tools pass their own.
"""
