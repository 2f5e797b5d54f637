"""
The generated worlds as registered datasets. Importing this module (``import projects_lda`` does)
registers ``lvis_embedded_{train,val,test}``, the federated variant
``lvis_embedded_fed_{train,val,test}``, the many-class variant at the benchmark's 300 classes
``lvis_embedded_many_{train,val,test}`` and ``lvis_embedded_many_fed_{train,val,test}`` and at
LVIS v1's 1,203 classes ``lvis_embedded_many1203_{train,val,test}`` and
``lvis_embedded_many1203_fed_{train,val,test}``. Nothing is generated before first use; the
generator (numpy / OpenCV drawing) is imported then, which also keeps
``python -m projects_lda.worlds.embedded`` free of runpy's "found in sys.modules" warning.
"""
import os

from ..data.datasets import register_generated_lvis

__all__ = ["register_embedded_lvis"]


def register_embedded_lvis(root=None, prefix="lvis_embedded", variant="exhaustive"):
    """
    Register ``<prefix>_train``, ``<prefix>_val`` (for tuning) and ``<prefix>_test`` (for
    reporting): the embedded dataset's ``variant`` (a key of
    :data:`~projects_lda.worlds.embedded.VARIANTS`: "exhaustive", "federated", "many_class",
    "many_class_federated", "many_class_1203", "many_class_1203_federated") in ``root`` (None:
    :func:`~projects_lda.worlds.embedded.get_embedded_root`, resolved on first use), generated
    on the first ``DatasetCatalog.get`` or lazy metadata access.
    """
    spec = ("embedded", root, variant)
    state = {}

    def resolve_root():
        if "root" not in state:
            from .embedded import VARIANTS, ensure_embedded_lvis, get_embedded_root

            state["root"] = ensure_embedded_lvis(
                root or get_embedded_root(variant), **VARIANTS[variant]
            )
        return state["root"]

    for split in ("train", "val", "test"):

        def paths(split=split):
            from .embedded import SPLIT_JSON

            r = resolve_root()
            return os.path.join(r, SPLIT_JSON[split]), r

        register_generated_lvis(f"{prefix}_{split}", paths, spec)


register_embedded_lvis()
register_embedded_lvis(prefix="lvis_embedded_fed", variant="federated")
register_embedded_lvis(prefix="lvis_embedded_many", variant="many_class")
register_embedded_lvis(prefix="lvis_embedded_many_fed", variant="many_class_federated")
register_embedded_lvis(prefix="lvis_embedded_many1203", variant="many_class_1203")
register_embedded_lvis(prefix="lvis_embedded_many1203_fed", variant="many_class_1203_federated")
