"""LVIS evaluation: a streamed hotcoco evaluator with lvis-api's numbers, and its config keys."""
from .build import build_evaluator
from .config import add_evaluation_config
from .lvis_evaluation import LVIS_METRICS, HotcocoLVISEvaluator

__all__ = ["HotcocoLVISEvaluator", "LVIS_METRICS", "add_evaluation_config", "build_evaluator"]
