"""
Export of a trained Mask R-CNN (LDA's, the baseline's, a peer's) to TorchScript or ONNX, the
exported model run as a detectron2 model, and its parity with the eager model.

The export follows detectron2's ``tools/deploy/export_model.py``: ``TracingAdapter`` traces
``model.inference(inputs, do_postprocess=False)`` on a sample image. The traced function returns
a fixed tuple of tensors, :data:`OUTPUTS` (boxes in the resized image's coordinates, scores,
contiguous class ids, and the (N, 1, M, M) mask probabilities of each box), so that a deployment
reads the outputs without detectron2's schema objects. ``model.json`` beside the model holds what
running it needs: the resize (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``), the channel order,
the output names and the class names with the dataset's category ids. :class:`ExportedModel`
does that resize, runs the file and pastes the masks with detectron2's ``detector_postprocess``,
as the eager model does.

ONNX is written by torch's TorchScript-based exporter at opset :data:`ONNX_OPSET`: detectron2's
ROIAlign (``aligned=True``, half-pixel offset) has an ONNX form only from opset 16 on; at
detectron2's opset 11 torchvision exports it without the offset and the scores differ.
"""
import inspect
import json
import os
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

import detectron2.data.transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..data.class_names import ClassNames
from ..engine import compat
from .predictor import names_metadata

__all__ = [
    "ExportError",
    "ExportedModel",
    "check_export_options",
    "Parity",
    "ONNX_OPSET",
    "OUTPUTS",
    "compare_predictions",
    "export_model",
    "model_input",
    "parity_problems",
    "read_model_input",
]

#: Opset of the ONNX export (see the module docstring).
ONNX_OPSET = 17
#: Outputs of the exported model (``masks`` only when the model has a mask head).
OUTPUTS = ("boxes", "scores", "classes", "masks")
INFO_FILE = "model.json"
FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}


class ExportError(RuntimeError):
    """A model cannot be exported in the format or by the method asked for."""


def model_input(image: np.ndarray, *, min_size: int, max_size: int) -> Dict:
    """
    The input dict of a detectron2 model for an (H, W, 3) image already in the model's channel
    order: the image resized as at test time (``ResizeShortestEdge``, as ``DefaultPredictor``
    does), as a (3, h, w) float tensor, with the original ``height`` and ``width``.
    """
    height, width = image.shape[:2]
    resized = T.ResizeShortestEdge([min_size, min_size], max_size).get_transform(image)
    resized = resized.apply_image(image)
    tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    return {"image": tensor, "height": height, "width": width}


def _traced_inference(model, inputs):
    """What the exported model computes: :data:`OUTPUTS` of one image, before the resize back
    and the pasting of masks (detectron2's ``do_postprocess=False``)."""
    instances = model.inference(inputs, do_postprocess=False)[0]
    out = (instances.pred_boxes.tensor, instances.scores, instances.pred_classes)
    if instances.has("pred_masks"):
        out = out + (instances.pred_masks,)
    return out


class _ScriptableAdapter(nn.Module):
    """detectron2's adapter for scripting: dicts of fields in and out, no ``Instances``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, inputs: List[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
        instances = self.model.inference(inputs, do_postprocess=False)
        return [i.get_fields() for i in instances]


_SCRIPTED_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
    "pred_masks": Tensor,
}


def check_export_options(fmt: str, method: str) -> None:
    """Raises :class:`ExportError` for a format or method :func:`export_model` does not take."""
    if fmt not in FILES:
        raise ExportError(f"--format must be one of {', '.join(FILES)}, not {fmt}")
    if method not in ("tracing", "scripting"):
        raise ExportError(f"--export-method must be tracing or scripting, not {method}")
    if fmt == "onnx" and method != "tracing":
        raise ExportError("ONNX is exported by tracing (--export-method tracing)")


def export_model(
    model: nn.Module,
    sample: Tensor,
    output_dir: str,
    *,
    cfg,
    class_names: ClassNames,
    fmt: str = "torchscript",
    method: str = "tracing",
) -> str:
    """
    Exports the eval-mode ``model`` (built from ``cfg``, weights loaded) into ``output_dir`` as
    ``model.ts`` (``fmt`` "torchscript", ``method`` "tracing" or "scripting") or ``model.onnx``
    (``fmt`` "onnx", tracing), traced on ``sample`` (a (3, h, w) float input, resized as at
    test time), with ``model.json``; returns the model file's path. Raises
    :class:`ExportError` when the combination is not supported or the model cannot be
    scripted.
    """
    check_export_options(fmt, method)
    export = compat.detectron2_export()
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILES[fmt])
    model.eval()
    with torch.no_grad():
        outputs = OUTPUTS[: len(_traced_inference(model, [{"image": sample}]))]
        if method == "scripting":
            try:
                exported = export.scripting_with_instances(
                    _ScriptableAdapter(model), _SCRIPTED_FIELDS
                )
            except RuntimeError as e:
                lines = [line for line in str(e).splitlines() if line.strip()]
                raise ExportError(
                    f"{cfg.MODEL.ROI_HEADS.NAME} cannot be scripted (TorchScript: "
                    f"{' '.join(lines[:2])}); export it by tracing (--export-method tracing)"
                ) from None
            torch.jit.save(exported, path)
        else:
            adapter = export.TracingAdapter(model, [{"image": sample}], _traced_inference)
            adapter.eval()  # a new module is in training mode, and the ONNX exporter restores it
            if fmt == "torchscript":
                exported = torch.jit.trace(adapter, (sample,))
                torch.jit.save(exported, path)
            else:
                _export_onnx(adapter, sample, path, outputs)
    if fmt == "torchscript":
        export.dump_torchscript_IR(exported, output_dir)
    info = {
        "format": fmt,
        "export_method": method,
        "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
        "outputs": list(outputs),
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        "roi_heads": cfg.MODEL.ROI_HEADS.NAME,
        **class_names.state_dict(),
    }
    with open(os.path.join(output_dir, INFO_FILE), "w") as f:
        json.dump(info, f, indent=1)
    return path


def _export_onnx(adapter, sample, path, outputs):
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript-based exporter: it takes a traced module
    dynamic = {"image": {1: "height", 2: "width"}}
    dynamic.update({name: {0: "detections"} for name in outputs})
    torch.onnx.export(
        adapter, (sample,), path, opset_version=ONNX_OPSET, input_names=["image"],
        output_names=list(outputs), dynamic_axes=dynamic, **kwargs,
    )


class ExportedModel:
    """
    A model written by :func:`export_model`, run like a detectron2 model: ``model(inputs)`` takes
    detectron2's list of input dicts (``image`` resized as at test time, ``height``, ``width``)
    and returns ``[{"instances": Instances}]`` in the original image's coordinates with pasted
    masks; :meth:`predict` takes an (H, W, 3) BGR image as ``DefaultPredictor`` does.
    ``class_names`` and ``metadata`` come from ``model.json``.
    """

    def __init__(self, folder: str, *, fmt: Optional[str] = None, num_threads: int = 0):
        info_path = os.path.join(folder, INFO_FILE)
        if not os.path.isfile(info_path):
            raise FileNotFoundError(f"exported model: {info_path} not found")
        with open(info_path) as f:
            self.info = json.load(f)
        self.format = fmt or self.info["format"]
        path = os.path.join(folder, FILES[self.format])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"exported model: {path} not found")
        self.class_names = ClassNames(self.info["thing_classes"], self.info["dataset_ids"])
        self.metadata = names_metadata(self.class_names)
        self.scripted = self.info["export_method"] == "scripting"
        if self.format == "onnx":
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if num_threads:
                options.intra_op_num_threads = num_threads
            self._session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
        else:
            self._module = torch.jit.load(path, map_location="cpu")

    def _raw(self, image: Tensor) -> Instances:
        """The model's outputs for one resized (3, h, w) image, as ``Instances`` of size (h, w)."""
        image = image.to(torch.float32)  # detectron2's loaders give uint8; the trace took float
        if self.format == "onnx":
            values = self._session.run(None, {"image": image.numpy()})
            fields = dict(zip(self.info["outputs"], (torch.from_numpy(v) for v in values)))
        elif self.scripted:
            out = self._module([{"image": image}])[0]
            fields = {"boxes": out["pred_boxes"], "scores": out["scores"],
                      "classes": out["pred_classes"]}
            if "pred_masks" in out:
                fields["masks"] = out["pred_masks"]
        else:
            fields = dict(zip(self.info["outputs"], self._module(image)))
        result = Instances(tuple(image.shape[-2:]))
        result.pred_boxes = Boxes(fields["boxes"])
        result.scores = fields["scores"]
        result.pred_classes = fields["classes"]
        if "masks" in fields:
            result.pred_masks = fields["masks"]
        return result

    def __call__(self, inputs: Sequence[Dict]) -> List[Dict[str, Instances]]:
        with torch.no_grad():
            return [
                {"instances": detector_postprocess(
                    self._raw(x["image"]), x.get("height", x["image"].shape[-2]),
                    x.get("width", x["image"].shape[-1]))}
                for x in inputs
            ]

    def input_for(self, image_bgr: np.ndarray) -> Dict:
        """The input dict of an (H, W, 3) BGR image (:func:`model_input`)."""
        image = image_bgr[:, :, ::-1] if self.info["input_format"] == "RGB" else image_bgr
        return model_input(image, min_size=self.info["min_size_test"],
                           max_size=self.info["max_size_test"])

    def predict(self, image_bgr: np.ndarray) -> Dict[str, Instances]:
        """``DefaultPredictor``'s call: a BGR image in, ``{"instances": ...}`` out."""
        return self([self.input_for(image_bgr)])[0]


def read_model_input(path: str, cfg) -> Dict:
    """The model input of the image file ``path`` for the model of ``cfg``."""
    image = read_image(path, format=cfg.INPUT.FORMAT)
    return model_input(image, min_size=cfg.INPUT.MIN_SIZE_TEST, max_size=cfg.INPUT.MAX_SIZE_TEST)


class Parity(NamedTuple):
    """How an exported model's predictions of one image compare with the eager model's."""

    detections: int  # the eager model's
    exported_detections: int
    unmatched: int  # eager detections without an exported one of its class and score
    max_box_diff: float  # largest coordinate difference of matched detections, pixels
    max_score_diff: float
    min_mask_iou: float  # smallest IoU of the masks of matched detections (1 without masks)


def compare_predictions(ref: Instances, out: Instances, *, score_tol: float = 1e-4) -> Parity:
    """
    Compares two ``Instances`` of the same image. Each eager detection, in order, is matched
    with the unmatched exported detection of its class whose score is within ``score_tol`` and
    whose box is nearest: detections of equal scores may come out in either order (sorting
    breaks ties by position, and the last bits of a score differ between runtimes).
    """
    n, m = len(ref), len(out)
    if n == 0 or m == 0:
        return Parity(n, m, n, 0.0, 0.0, 1.0)
    box = (ref.pred_boxes.tensor[:, None] - out.pred_boxes.tensor[None]).abs().amax(dim=2)
    score = (ref.scores[:, None] - out.scores[None]).abs()
    allowed = (ref.pred_classes[:, None] == out.pred_classes[None]) & (score <= score_tol)
    cost = torch.where(allowed, box, torch.full_like(box, float("inf")))
    pairs = []
    for i in range(n):
        j = int(cost[i].argmin())
        if torch.isfinite(cost[i, j]):
            pairs.append((i, j))
            cost[:, j] = float("inf")
    if not pairs:
        return Parity(n, m, n, 0.0, 0.0, 1.0)
    rows, cols = (torch.tensor(idx) for idx in zip(*pairs))
    iou = 1.0
    if ref.has("pred_masks") and out.has("pred_masks"):
        a = ref.pred_masks[rows].flatten(1).bool()
        b = out.pred_masks[cols].flatten(1).bool()
        inter, union = (a & b).sum(1).double(), (a | b).sum(1).double()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        iou = iou.min().item()
    return Parity(
        n, m, n - len(pairs), box[rows, cols].max().item(), score[rows, cols].max().item(), iou
    )


def parity_problems(
    parity: Parity, *, box_tol: float = 1e-4, min_iou: float = 0.99
) -> List[str]:
    """What breaks the parity (empty when the exported model agrees with the eager one: as many
    detections, each matched with one of its class and score, boxes within ``box_tol`` pixels,
    masks with an IoU of at least ``min_iou``)."""
    problems = []
    if parity.detections != parity.exported_detections:
        problems.append(
            f"{parity.exported_detections} detections, the eager model {parity.detections}"
        )
    if parity.unmatched:
        problems.append(
            f"{parity.unmatched} detections without an exported one of the same class and score"
        )
    if parity.max_box_diff > box_tol:
        problems.append(f"box coordinates differ by {parity.max_box_diff:.3g} > {box_tol}")
    if parity.min_mask_iou < min_iou:
        problems.append(f"a mask IoU is {parity.min_mask_iou:.4f} < {min_iou}")
    return problems
