"""
Safe checkpoint files: restricted loading, clear errors, a visible load report, atomic writes.

:class:`SafeCheckpointer` is detectron2's ``DetectionCheckpointer`` with four changes:

* **Restricted loading.** ``.pth`` / ``.pyth`` files are read with
  ``torch.load(..., weights_only=True)``: only tensors, numbers, strings and plain containers are
  unpickled, never arbitrary objects. torch >= 2.6 already defaults to it, but the default can be
  turned off by the ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` environment variable; an explicit
  argument cannot. Detectron-format ``.pkl`` files (plain pickles of numpy arrays, from
  detectron2's model zoo or conversion scripts) are read by an unpickler that accepts numpy arrays
  and nothing else.
* **Clear errors.** A truncated, corrupt or unsafe checkpoint raises :class:`CheckpointError`
  naming the file and the cause; a missing file raises ``FileNotFoundError`` naming it (fvcore
  raises a bare ``AssertionError``).
* **A load report.** fvcore's warnings about parameters missing from the checkpoint and
  checkpoint keys the model does not use are kept, and one summary line follows them: how many
  tensors were loaded, which are new (initialised from scratch) and which were unused. For example,
  loading a baseline Mask R-CNN into LDA reports the FgBg / unbalanced / balanced classifiers,
  the projection head, the class frequencies and the alpha window as new, and the baseline's
  ``cls_score`` as unused. The report is also kept in :attr:`SafeCheckpointer.last_load_report`.
* **Resume past a damaged checkpoint.** When the file named by ``last_checkpoint`` is missing,
  truncated or corrupt, ``resume_or_load(..., resume=True)`` loads instead the intact checkpoint
  of the folder that holds the highest iteration, with a warning naming the files skipped; it
  raises :class:`CheckpointError` only when no checkpoint there can be loaded. The candidates are
  the files the periodic checkpointer writes, ordered by the iteration they hold, never by
  modification time (a copied folder has new times, in directory order): ``model_0000499.pth``
  by the 499 of its name, ``model_final.pth`` by the iteration it stores (the run's last,
  ``MAX_ITER - 1``; a later run with a larger ``MAX_ITER`` writes periodic files past it).
  A candidate whose stored ``iteration`` differs from its name's (a renamed or copied file) is
  skipped, and the warning gives both values: its place in the order would be wrong. (The file
  ``last_checkpoint`` names is loaded as detectron2 loads it, with a warning on such a mismatch;
  the resume starts after the stored iteration.) Other ``.pth`` files (pretrained weights, say)
  hold no iteration of the run and are not candidates. No file is deleted or rewritten.
* **Atomic writes.** A checkpoint (and the ``last_checkpoint`` tag) is written to a temporary
  file in the same folder, flushed to disk, then renamed over the target. A run killed while
  saving leaves the previous file intact (never a truncated ``model_final.pth``), and
  ``last_checkpoint`` always names a complete file.

detectron2 writes ``model_final.pth`` only after the last iteration succeeded (its
``PeriodicCheckpointer`` has no ``after_train``), so a run that crashes, is killed, or stops on a
non-finite loss never replaces an existing ``model_final.pth``.
"""
import logging
import os
import pickle
import re
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer

from . import compat

__all__ = [
    "CheckpointError",
    "LoadReport",
    "SafeCheckpointer",
    "atomic_write",
    "checkpoint_name_iteration",
    "load_checkpoint_file",
]

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint file could not be loaded (truncated, corrupt, or holding unsafe objects)."""


class LoadReport(NamedTuple):
    """What loading a checkpoint into a model did (see :meth:`SafeCheckpointer.load`)."""

    path: str
    loaded: Tuple[str, ...]  # model keys that received a value from the checkpoint
    new: Tuple[str, ...]  # model keys absent from the checkpoint (left as initialised)
    unused: Tuple[str, ...]  # checkpoint keys the model does not have
    wrong_shape: Tuple[Tuple[str, tuple, tuple], ...]  # (key, checkpoint shape, model shape)


# ------------------------------------------------------------------------------- atomic writes
def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """
    Writes ``path`` atomically: ``write(f)`` fills a temporary file in the same folder, which is
    flushed, fsync'ed and renamed over ``path``. On any error the temporary file is removed and
    ``path`` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


# ------------------------------------------------------------------------------- safe loading
# What a Detectron-format .pkl may contain besides plain containers: numpy arrays and scalars.
_PKL_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 with protocol 2
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PKL_ALLOWED:
            return super().find_class(module, name)
        # numpy 2 spells the numpy 1 module names differently; both are accepted above.
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _is_local(path: str) -> bool:
    return "://" not in path


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """
    Reads a ``.pth`` / ``.pyth`` file with ``torch.load(weights_only=True)`` (on the CPU), or a
    ``.pkl`` file with an unpickler restricted to numpy arrays. Raises :class:`CheckpointError`
    naming ``path`` when the file is truncated, corrupt, or holds other objects.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"Cannot load checkpoint {path}: the file is empty (0 bytes)")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return _NumpyOnlyUnpickler(f, encoding="latin1").load()
        return torch.load(path, map_location=torch.device("cpu"), weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "weights_only" in text.lower() or "refusing to unpickle" in text:
            raise CheckpointError(
                f"Cannot load checkpoint {path}: it holds objects other than tensors and numbers "
                f"({text.splitlines()[0] if text else type(e).__name__}). Only weight files are "
                "loaded; re-save the model's state_dict() with torch.save if you trust the file."
            ) from e
        raise _corrupt(path, size, e) from e
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, KeyError) as e:
        raise _corrupt(path, size, e) from e


def _corrupt(path, size, e):
    return CheckpointError(
        f"Cannot load checkpoint {path} ({size} bytes): the file is truncated or corrupt "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). --resume falls back "
        "to the intact checkpoint of the output folder with the highest iteration."
    )


# What detectron2's PeriodicCheckpointer names its files (its default file_prefix, "model"):
# "model_{iteration:07d}.pth" every CHECKPOINT_PERIOD iterations, "model_final.pth" at the end.
_PERIODIC_NAME = re.compile(r"model_(\d+)\.pth")
_FINAL_NAME = "model_final.pth"


def checkpoint_name_iteration(path: str) -> Optional[int]:
    """The iteration in a periodic checkpoint's name (``model_0000499.pth`` -> 499), else None."""
    m = _PERIODIC_NAME.fullmatch(os.path.basename(path))
    return int(m.group(1)) if m else None


def last_checkpoint_name(save_dir: str) -> Optional[str]:
    """The file name ``save_dir/last_checkpoint`` tags (the checkpoint ``--resume`` starts
    from, unless it fails to load), or None where there is no tag."""
    tag = os.path.join(save_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return None
    with open(tag) as f:
        return f.read().strip()


def _stored_iteration(data) -> Optional[int]:
    """The ``iteration`` a training checkpoint stores (PeriodicCheckpointer saves it), or None."""
    value = data.get("iteration") if isinstance(data, dict) else None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------- checkpointer
class SafeCheckpointer(DetectionCheckpointer):
    """
    ``DetectionCheckpointer`` with restricted loading, clear errors, a load report and atomic
    writes (see the module docstring). A drop-in replacement: same constructor and methods.
    """

    last_load_report: LoadReport = None
    _queries = {}  # of the path being loaded (main's "?matching_heuristics=True")
    _preloaded = {}  # path -> content already read by resume_or_load

    # ---- loading
    def load(self, path, *args, **kwargs):
        file, queries = compat.split_weights_query(path)
        if file and _is_local(file) and not os.path.isfile(file):
            raise FileNotFoundError(f"Checkpoint not found: {file}{_query_hint(path)}")
        self._loading, self._queries = file, queries
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading, self._queries = None, {}

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        # Each candidate is read (and checked) before load() is called with it, so a damaged
        # file never reaches detectron2's loader half-way; load() then uses what was read.
        last = self.get_checkpoint_file()
        try:
            data = load_checkpoint_file(last)
        except (CheckpointError, FileNotFoundError) as e:
            return self._resume_from_fallback(last, e)
        # The file last_checkpoint names is loaded as detectron2 loads it (the run wrote that
        # name, or the user chose it); the resume starts after the iteration it stores.
        named, stored = checkpoint_name_iteration(last), _stored_iteration(data)
        if named is not None and stored is not None and named != stored:
            self.logger.warning(
                "%s stores iteration %d but its name says %d; resuming after iteration %d",
                last, stored, named, stored,
            )
        return self._load_preloaded(last, data)

    def _resume_from_fallback(self, last: str, error: Exception) -> Dict[str, Any]:
        """
        Loads the intact candidate with the highest iteration (see :meth:`_fallback_candidates`)
        after the file ``last_checkpoint`` names (``last``) failed to load with ``error``.
        """
        skipped = [(last, error)]
        for iteration, candidate in self._fallback_candidates(last, skipped):
            try:
                data = load_checkpoint_file(candidate)
            except (CheckpointError, FileNotFoundError) as e:
                skipped.append((candidate, e))
                continue
            stored = _stored_iteration(data)
            if stored != iteration:
                # a renamed or copied file: ordered by its name, it may not be the newest
                reason = (
                    "it holds no iteration"
                    if stored is None
                    else f"it stores iteration {stored} but its name says {iteration}"
                )
                skipped.append((candidate, reason))
                continue
            also = "; ".join(f"{f} ({e})" for f, e in skipped[1:])
            self.logger.warning(
                "Cannot resume from %s (%s); resuming from %s (iteration %d), the intact "
                "checkpoint with the highest iteration%s",
                last, error, candidate, iteration, f"; also skipped: {also}" if also else "",
            )
            return self._load_preloaded(candidate, data)
        raise CheckpointError(
            f"Cannot resume from {self.save_dir}: no checkpoint there can be loaded ("
            + "; ".join(f"{f}: {e}" for f, e in skipped)
            + ")"
        )

    def _fallback_candidates(self, last: str, skipped: List) -> List[Tuple[int, str]]:
        """
        ``(iteration, path)`` of the folder's periodic checkpoints and ``model_final.pth`` other
        than ``last``, highest iteration first (``model_final.pth`` first on a tie: it holds the
        same state as the periodic file of its iteration). A periodic file's iteration is the one
        in its name, checked against the stored one when it is loaded; ``model_final.pth``'s is
        the one it stores, so it is read here (a failure is added to ``skipped``). Never the
        modification times: copying a folder (``cp -r``) gives its files new ones, in directory
        order.
        """
        same = os.path.abspath(last)
        ranked = []
        for f in self.get_all_checkpoint_files():
            if os.path.abspath(f) == same:
                continue
            iteration = checkpoint_name_iteration(f)
            if iteration is not None:
                ranked.append((iteration, 0, f))
            elif os.path.basename(f) == _FINAL_NAME:
                try:
                    iteration = _stored_iteration(load_checkpoint_file(f))
                except (CheckpointError, FileNotFoundError) as e:
                    skipped.append((f, e))
                    continue
                if iteration is None:
                    skipped.append((f, "it holds no iteration"))
                    continue
                ranked.append((iteration, 1, f))
        ranked.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)
        return [(iteration, f) for iteration, _, f in ranked]

    def _load_preloaded(self, path: str, data: Dict[str, Any]) -> Dict[str, Any]:
        """``load(path)`` with the content already read (``_load_file`` takes it from here)."""
        self._preloaded = {path: data}
        try:
            return self.load(path)
        finally:
            self._preloaded = {}

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            data = load_checkpoint_file(filename)
            if not isinstance(data, dict):
                raise CheckpointError(f"Cannot load checkpoint {filename}: expected a dict")
            # as DetectionCheckpointer._load_file does for .pkl files
            if "model" in data and "__author__" in data:
                self.logger.info("Reading a file from '{}'".format(data["__author__"]))
                return data
            if "blobs" in data:
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        data = self._preloaded.pop(filename, None)
        if data is None:
            data = load_checkpoint_file(filename)
        data = self._apply_queries(filename, data)
        if filename.endswith(".pyth"):
            if "model_state" not in data:
                raise CheckpointError(
                    f"Cannot load .pyth file {filename}: pycls checkpoints hold 'model_state'"
                )
            model_state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}
        if not isinstance(data, dict):
            raise CheckpointError(
                f"Cannot load checkpoint {filename}: expected a dict, got {type(data).__name__}"
            )
        if "model" not in data:
            data = {"model": data}
        return data

    def _apply_queries(self, filename, data):
        """``?matching_heuristics=True`` on MODEL.WEIGHTS (detectron2 main reads it)."""
        queries = dict(self._queries)
        if not queries:
            return data
        heuristics = queries.pop("matching_heuristics", None) == ["True"]
        if queries:
            raise ValueError(f"{filename}: unsupported query in the weights path: {queries}")
        if heuristics and isinstance(data, dict):
            data = dict(data) if "model" in data else {"model": data}
            data["matching_heuristics"] = True
        return data

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        model_keys = set(self.model.state_dict().keys())
        missing = set(incompatible.missing_keys)
        wrong = tuple(incompatible.incorrect_shapes)
        wrong_keys = {k for k, _, _ in wrong}
        self.last_load_report = LoadReport(
            path=str(getattr(self, "_loading", None) or ""),
            loaded=tuple(sorted(model_keys - missing - wrong_keys)),
            new=tuple(sorted(missing | wrong_keys)),
            unused=tuple(sorted(incompatible.unexpected_keys)),
            wrong_shape=wrong,
        )
        return incompatible

    def _log_incompatible_keys(self, incompatible):
        super()._log_incompatible_keys(incompatible)  # fvcore's detailed warnings
        r = self.last_load_report
        if r is None:
            return
        n_model = len(r.loaded) + len(r.new)
        msg = f"Loaded {len(r.loaded)} of {n_model} model tensors from {r.path}"
        if not r.new and not r.unused:
            self.logger.info(msg + " (all matched)")
            return
        msg += f"; new (not in the checkpoint, initialised from scratch): {len(r.new)}"
        if r.new:
            msg += " [" + ", ".join(_shorten(r.new)) + "]"
        msg += f"; unused (in the checkpoint, not in the model): {len(r.unused)}"
        if r.unused:
            msg += " [" + ", ".join(_shorten(r.unused)) + "]"
        if r.wrong_shape:
            msg += f"; skipped for a shape mismatch: {len(r.wrong_shape)}"
        self.logger.warning(msg)

    # ---- saving
    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if not _is_local(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to {}".format(save_file))
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not _is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write(
            os.path.join(self.save_dir, "last_checkpoint"),
            lambda f: f.write(last_filename_basename),
            mode="w",
        )


def _query_hint(path):
    if "?" in str(path) and not compat.WEIGHTS_URL_QUERIES:
        return " (this detectron2 build reads no '?query' after a weights path; main does)"
    return ""


def _shorten(keys, limit: int = 12):
    """Groups keys by their parent module: ``a.b.{weight, bias}``; at most ``limit`` groups."""
    groups = {}
    for k in keys:
        parent, _, leaf = k.rpartition(".")
        groups.setdefault(parent, []).append(leaf)
    out = []
    for parent, leaves in groups.items():
        inner = leaves[0] if len(leaves) == 1 else "{" + ", ".join(sorted(leaves)) + "}"
        out.append(f"{parent}.{inner}" if parent else inner)
    if len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more"]
    return out
