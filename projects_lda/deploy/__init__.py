"""
A trained model outside training: the predictor with the class names that travel in the
checkpoint (:mod:`.predictor`), the demo on images, folders, a dataset's images and videos (the
project's one predict-and-draw path: :mod:`.demo`, :func:`.commands.demo`), results
files (:mod:`.results`), and the export to TorchScript / ONNX with its parity check
(:mod:`.export`). See docs/deployment.md.
"""
from .predictor import Predictor, load_inference_weights, model_class_names

__all__ = ["Predictor", "load_inference_weights", "model_class_names"]
