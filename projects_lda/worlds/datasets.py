"""
The generated worlds as registered datasets. Importing this module (``import projects_lda`` does)
registers ``lvis_embedded_{train,val,test}``, the federated variant
``lvis_embedded_fed_{train,val,test}``, the many-class variant at the benchmark's 300 classes
``lvis_embedded_many_{train,val,test}`` and ``lvis_embedded_many_fed_{train,val,test}`` and at
LVIS v1's 1,203 classes ``lvis_embedded_many1203_{train,val,test}`` and
``lvis_embedded_many1203_fed_{train,val,test}``, and the icon world's settings
``lvis_icons_small_{train,val,test}`` and ``lvis_icons_1203_{train,val,test}``
(:mod:`projects_lda.worlds.icons`). Nothing is generated before first use; the
generator (numpy / OpenCV drawing) is imported then, which also keeps
``python -m projects_lda.worlds.embedded`` free of runpy's "found in sys.modules" warning.
"""
import os

from ..data.datasets import register_generated_lvis

__all__ = ["register_embedded_lvis", "register_icon_lvis"]


def register_embedded_lvis(root=None, prefix="lvis_embedded", variant="exhaustive"):
    """
    Register ``<prefix>_train``, ``<prefix>_val`` (for tuning) and ``<prefix>_test`` (for
    reporting): the embedded dataset's ``variant`` (a key of
    :data:`~projects_lda.worlds.embedded.VARIANTS`: "exhaustive", "federated", "many_class",
    "many_class_federated", "many_class_1203", "many_class_1203_federated") in ``root`` (None:
    :func:`~projects_lda.worlds.embedded.get_embedded_root`, resolved on first use), generated
    on the first ``DatasetCatalog.get`` or lazy metadata access.
    """

    def ensure():
        from .embedded import VARIANTS, ensure_embedded_lvis, get_embedded_root

        return ensure_embedded_lvis(root or get_embedded_root(variant), **VARIANTS[variant])

    def split_file(split):
        from .embedded import SPLIT_JSON

        return SPLIT_JSON[split]

    _register_splits(prefix, ("embedded", root, variant), ensure, split_file)


def register_icon_lvis(setting, prefix=None, root=None):
    """
    Register ``<prefix>_{train,val,test}`` (default prefix ``lvis_<setting>``): the icon world's
    ``setting`` (a key of :data:`~projects_lda.worlds.icons.SETTINGS`) in ``root`` (None:
    :func:`~projects_lda.worlds.icons.get_icon_root`), generated on first use.
    """

    def ensure():
        from .icons import SETTINGS, ensure_icon_lvis, get_icon_root

        return ensure_icon_lvis(root or get_icon_root(setting), **SETTINGS[setting])

    def split_file(split):
        from .icons import SPLIT_JSON

        return SPLIT_JSON[split]

    _register_splits(prefix or f"lvis_{setting}", ("icons", root, setting), ensure, split_file)


def _register_splits(prefix, spec, ensure, split_file):
    """Register the three splits of a generated world; ``ensure()`` returns its folder (writing
    it first when needed) on the first use of any split."""
    state = {}

    def resolve_root():
        if "root" not in state:
            state["root"] = ensure()
        return state["root"]

    for split in ("train", "val", "test"):

        def paths(split=split):
            r = resolve_root()
            return os.path.join(r, split_file(split)), r

        register_generated_lvis(f"{prefix}_{split}", paths, spec)


register_embedded_lvis()
register_embedded_lvis(prefix="lvis_embedded_fed", variant="federated")
register_embedded_lvis(prefix="lvis_embedded_many", variant="many_class")
register_embedded_lvis(prefix="lvis_embedded_many_fed", variant="many_class_federated")
register_embedded_lvis(prefix="lvis_embedded_many1203", variant="many_class_1203")
register_embedded_lvis(prefix="lvis_embedded_many1203_fed", variant="many_class_1203_federated")
register_icon_lvis("icons_small")
register_icon_lvis("icons_1203")
