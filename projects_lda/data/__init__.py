"""
A user's datasets: the registration of COCO- and LVIS-format files (see
:mod:`projects_lda.data.datasets`), their loader, the training-set class statistics and the
reproducible training loader. The worlds the project generates are :mod:`projects_lda.worlds`.

Importing this package registers LVIS v1 and v0.5 under the project's own names
(``lda_lvis_v1_train``, ...; detectron2's ``lvis_v1_*`` stay as detectron2 registers them) and
the datasets named in ``$LDA_EXTRA_DATASETS``.
"""
from .datasets import (
    EXTRA_DATASETS_ENV,
    class_metadata,
    load_lvis_format,
    parse_dataset_spec,
    register_all_lvis,
    register_from_env,
    register_generated_lvis,
    register_lvis_format,
)
from .frequency_groups import lvis_frequency

__all__ = [
    "EXTRA_DATASETS_ENV",
    "class_metadata",
    "load_lvis_format",
    "lvis_frequency",
    "parse_dataset_spec",
    "register_all_lvis",
    "register_from_env",
    "register_generated_lvis",
    "register_lvis_format",
]

register_all_lvis()
register_from_env()
