"""
The one place where the detectron2 builds this project supports differ: the 0.6 release (built
from its Python sources by tools/setup.sh) and official GitHub main. Both say ``__version__ ==
"0.6"``, so each difference is decided by the feature itself, once, at import.
See docs/detectron2_builds.md.
"""
import importlib
import inspect
from urllib.parse import parse_qs, urlparse

from detectron2.checkpoint import detection_checkpoint
from detectron2.engine import SimpleTrainer

__all__ = [
    "LAUNCH_SUPPORTS_CPU",
    "WRITE_METRICS_TAKES_ITER",
    "WEIGHTS_URL_QUERIES",
    "split_weights_query",
    "detectron2_export",
]


def _launch_supports_cpu() -> bool:
    # main's worker picks the gloo backend without CUDA; 0.6's asserts CUDA
    try:
        worker = importlib.import_module("detectron2.engine.launch")._distributed_worker
        return "gloo" in inspect.getsource(worker).lower()
    except (OSError, TypeError, AttributeError):  # no source: use the project's CPU launcher
        return False


#: ``detectron2.engine.launch`` starts CPU processes with gloo (main since 2023; 0.6 asserts CUDA).
LAUNCH_SUPPORTS_CPU = _launch_supports_cpu()
#: ``SimpleTrainer._write_metrics`` takes ``iter`` (main; it also honours ``gather_metric_period``).
WRITE_METRICS_TAKES_ITER = "iter" in inspect.signature(SimpleTrainer._write_metrics).parameters
#: ``DetectionCheckpointer`` reads ``path?matching_heuristics=True`` (main).
WEIGHTS_URL_QUERIES = hasattr(detection_checkpoint, "parse_qs")


def split_weights_query(path: str):
    """
    ``(file, queries)`` of a ``MODEL.WEIGHTS`` value: ``"w.pth?matching_heuristics=True"`` gives
    ``("w.pth", {"matching_heuristics": ["True"]})`` where detectron2 reads such queries;
    elsewhere (0.6) the whole value is the file name and ``queries`` is empty.
    """
    if not WEIGHTS_URL_QUERIES or not path:
        return path, {}
    parsed = urlparse(path)
    return parsed._replace(query="").geturl(), parse_qs(parsed.query)


def detectron2_export():
    """
    The module ``detectron2.export`` (``TracingAdapter``, ``dump_torchscript_IR``,
    ``scripting_with_instances``), imported on first call.

    main's ``detectron2/export/__init__.py`` imports its caffe2 exporter only when caffe2 is
    installed; 0.6's imports it unconditionally, and current torch ships no caffe2.
    ``tools/setup.sh`` guards that import in the 0.6 build it installs (patch level 2 of
    ``tools/compat_patches.py``); an unpatched or older build gets an error saying so.
    """
    try:
        return importlib.import_module("detectron2.export")
    except ImportError as e:
        if "caffe2" not in str(e):
            raise
        raise ImportError(
            f"import detectron2.export failed ({e}): this detectron2 0.6 build imports caffe2, "
            "which current torch no longer ships. Rerun `bash tools/setup.sh`: it rebuilds "
            "detectron2 0.6 with that import guarded, as detectron2 main has it"
        ) from e
