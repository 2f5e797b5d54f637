"""
Datasets of projects_lda: the embedded synthetic long-tailed LVIS-format dataset and the
registration of COCO- and LVIS-format datasets (see :mod:`projects_lda.data.datasets`), the
dataset report (:mod:`projects_lda.data.report`).

Importing this package registers ``lvis_embedded_{train,val,test}``, the federated variant
``lvis_embedded_fed_{train,val,test}``, the many-class variant (:mod:`projects_lda.worlds.many_class`)
at the benchmark's 300 classes ``lvis_embedded_many_{train,val,test}`` and
``lvis_embedded_many_fed_{train,val,test}`` and at LVIS v1's 1,203 classes
``lvis_embedded_many1203_{train,val,test}`` and ``lvis_embedded_many1203_fed_{train,val,test}``
(nothing is generated before first use), completes the
metadata of detectron2's LVIS splits, and registers the datasets named in ``$LDA_EXTRA_DATASETS``.
"""
from .datasets import (
    EXTRA_DATASETS_ENV,
    class_metadata,
    load_lvis_format,
    parse_dataset_spec,
    register_all_lvis,
    register_embedded_lvis,
    register_from_env,
    register_lvis_format,
)
from .frequency_groups import lvis_frequency

# The generator (numpy/OpenCV drawing) is imported on first use, which also keeps
# ``python -m projects_lda.worlds.embedded`` free of runpy's "found in sys.modules" warning.
_EMBEDDED_NAMES = (
    "EMBEDDED_DEFAULTS",
    "ensure_embedded_lvis",
    "generate_embedded_lvis",
    "get_embedded_root",
)

__all__ = [
    "EXTRA_DATASETS_ENV",
    "class_metadata",
    "load_lvis_format",
    "lvis_frequency",
    "parse_dataset_spec",
    "register_all_lvis",
    "register_embedded_lvis",
    "register_from_env",
    "register_lvis_format",
    *_EMBEDDED_NAMES,
]


def __getattr__(name):
    if name in _EMBEDDED_NAMES:
        from ..worlds import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_embedded_lvis()
register_embedded_lvis(prefix="lvis_embedded_fed", variant="federated")
register_embedded_lvis(prefix="lvis_embedded_many", variant="many_class")
register_embedded_lvis(prefix="lvis_embedded_many_fed", variant="many_class_federated")
register_embedded_lvis(prefix="lvis_embedded_many1203", variant="many_class_1203")
register_embedded_lvis(prefix="lvis_embedded_many1203_fed", variant="many_class_1203_federated")
register_all_lvis()
register_from_env()
