"""
The class names that travel in a checkpoint, so that a trained model runs where only its config
and weights exist (the demo, the export, the Python predictor).

Training saves a :class:`ClassNames` under the checkpoint key :data:`CHECKPOINT_KEY`: the
training set's ``thing_classes`` (indexed by contiguous id, the model's class index) and the
dataset's own category id of each (``thing_dataset_id_to_contiguous_id`` inverted where the
dataset's metadata has it, else contiguous id + 1, the LVIS convention). It is stored as plain
lists of strings and integers, which ``torch.load(weights_only=True)`` reads.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["CHECKPOINT_KEY", "ClassNames", "class_names_from_metadata", "training_class_names"]

logger = logging.getLogger(__name__)

#: Key of the class names in a checkpoint written by training.
CHECKPOINT_KEY = "class_names"


class ClassNames:
    """
    A model's class names and the dataset's category id of each class, by contiguous id; a
    checkpointable (``state_dict`` / ``load_state_dict``) of detectron2's ``Checkpointer``.
    Empty when unknown.
    """

    def __init__(self, thing_classes: Sequence[str] = (), dataset_ids: Sequence[int] = ()):
        self.thing_classes: List[str] = [str(c) for c in thing_classes]
        self.dataset_ids: List[int] = [int(i) for i in dataset_ids]
        if self.dataset_ids and len(self.dataset_ids) != len(self.thing_classes):
            raise ValueError(
                f"class names: {len(self.thing_classes)} names but {len(self.dataset_ids)} "
                "dataset category ids"
            )
        if self.thing_classes and not self.dataset_ids:
            self.dataset_ids = list(range(1, len(self.thing_classes) + 1))

    def __len__(self) -> int:
        return len(self.thing_classes)

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassNames) and self.state_dict() == other.state_dict()

    def __repr__(self) -> str:
        return f"ClassNames({len(self)} classes)"

    def state_dict(self) -> Dict[str, List]:
        return {"thing_classes": list(self.thing_classes), "dataset_ids": list(self.dataset_ids)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Called by the checkpointer on ``--resume``: the training set of the config stays the
        authority (a changed one is reported, not replaced by the checkpoint's)."""
        stored = ClassNames.from_state(state, where="checkpoint")
        if self.thing_classes and stored != self:
            logger.warning(
                "The checkpoint's class names (%d) differ from the training set's (%d); the "
                "training set's are kept", len(stored), len(self),
            )
            return
        self.thing_classes, self.dataset_ids = stored.thing_classes, stored.dataset_ids

    @classmethod
    def from_state(cls, state: Any, *, where: str) -> "ClassNames":
        """The :class:`ClassNames` of a checkpoint's :data:`CHECKPOINT_KEY` entry; ``where``
        (the file) names it in the error raised when the entry is malformed."""
        if not isinstance(state, dict) or not isinstance(state.get("thing_classes"), list):
            raise ValueError(
                f"{where}: '{CHECKPOINT_KEY}' must be a dict with a list 'thing_classes', got "
                f"{type(state).__name__}"
            )
        try:
            return cls(state["thing_classes"], state.get("dataset_ids") or ())
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: '{CHECKPOINT_KEY}': {e}") from None

    def category_id(self, contiguous_id: int) -> int:
        """The dataset's category id of the model's class ``contiguous_id``."""
        return self.dataset_ids[contiguous_id]


def class_names_from_metadata(metadata) -> Optional[ClassNames]:
    """
    The :class:`ClassNames` of a dataset's ``Metadata`` (``thing_classes`` and, when present,
    ``thing_dataset_id_to_contiguous_id``), or None when it has no ``thing_classes``.
    """
    names = getattr(metadata, "thing_classes", None)  # LazyMetadata computes it on access
    if not names:
        return None
    mapping = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if not mapping:
        return ClassNames(names)
    ids = [None] * len(names)
    for dataset_id, contiguous in mapping.items():
        if not 0 <= int(contiguous) < len(names):
            raise ValueError(
                f"dataset {getattr(metadata, 'name', '?')}: thing_dataset_id_to_contiguous_id maps "
                f"{dataset_id} to {contiguous}, outside 0..{len(names) - 1}"
            )
        ids[int(contiguous)] = int(dataset_id)
    if None in ids:
        raise ValueError(
            f"dataset {getattr(metadata, 'name', '?')}: thing_dataset_id_to_contiguous_id has no "
            f"category id for contiguous id {ids.index(None)}"
        )
    return ClassNames(names, ids)


def training_class_names(cfg) -> Optional[ClassNames]:
    """The :class:`ClassNames` of ``cfg.DATASETS.TRAIN[0]``'s metadata (detectron2 checks that
    the training sets share their classes), or None when it has none."""
    from detectron2.data import MetadataCatalog

    if not cfg.DATASETS.TRAIN:
        return None
    return class_names_from_metadata(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]))
