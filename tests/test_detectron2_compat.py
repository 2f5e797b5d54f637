"""
The installed detectron2 works on the current stack on its own: each compatibility patch of
tools/compat_patches.py, checked on the installed package, whatever is imported first.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Only the build patched by tools/setup.sh has these patches. On an official build (with its C++
# ops) there is nothing to test here; there, detectron2 itself lacks deformable convolution's
# backward on the CPU and the modulated one's forward (NotImplementedError), and
# detectron2.model_zoo needs pkg_resources, which current setuptools no longer ships.
_c_fallback = pytest.importorskip(
    "detectron2._c_fallback",
    reason="not the detectron2 0.6 build patched by tools/setup.sh (no compatibility patches)",
)
from detectron2.layers import DeformConv, ModulatedDeformConv  # noqa: E402

# Run by tools/setup.sh before the project is installed: tested as setup.sh runs it.
PATCH_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "compat_patches.py"

needs_no_c_ops = pytest.mark.skipif(
    _c_fallback.HAS_C_OPS, reason="detectron2 has its C++ ops: the fallbacks are not used"
)


def _run_fresh(code):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize(
    "code",
    [
        # a user's script: detectron2 first, ours later (or never)
        "from detectron2.engine import DefaultPredictor\n"
        "import detectron2.modeling, detectron2.data, detectron2.evaluation, detectron2.model_zoo\n"
        "from detectron2.data.build import print_instances_class_histogram\n"
        "import projects_lda\n",
        # ours first
        "import projects_lda\nfrom detectron2.engine import DefaultPredictor\n"
        "import detectron2.modeling, detectron2.data, detectron2.evaluation\n",
    ],
    ids=["detectron2_first", "projects_lda_first"],
)
def test_import_order_does_not_matter(code):
    proc = _run_fresh(code + "print('OK')")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def _bilinear(img, y, x):
    """img (C,H,W); zero outside, as torchvision / detectron2 deformable convs do."""
    C, H, W = img.shape
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    out = np.zeros(C)
    for yy, wy in [(y0, 1 - (y - y0)), (y0 + 1, y - y0)]:
        for xx, wx in [(x0, 1 - (x - x0)), (x0 + 1, x - x0)]:
            if 0 <= yy < H and 0 <= xx < W:
                out += wy * wx * img[:, yy, xx]
    return out


def _direct_deform_conv(x, offset, weight, bias, mask, pad):
    """Deformable convolution (stride 1, dilation 1, 1 group) computed point by point."""
    N, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    out = np.zeros((N, O, H + 2 * pad - kh + 1, W + 2 * pad - kw + 1))
    for n in range(N):
        for i in range(out.shape[2]):
            for j in range(out.shape[3]):
                acc = np.zeros(O)
                for a in range(kh):
                    for b in range(kw):
                        k = a * kw + b
                        dy, dx = offset[n, 2 * k, i, j], offset[n, 2 * k + 1, i, j]
                        v = _bilinear(x[n], i - pad + a + dy, j - pad + b + dx)
                        m = 1.0 if mask is None else mask[n, k, i, j]
                        acc += m * weight[:, :, a, b] @ v
                out[n, :, i, j] = acc + (0 if bias is None else bias)
    return out


def test_deform_conv_matches_direct_computation_and_backprops():
    torch.manual_seed(0)
    conv = DeformConv(3, 4, kernel_size=3, padding=1, bias=False)
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    offset = (torch.randn(2, 18, 5, 6) * 1.3).requires_grad_(True)
    out = conv(x, offset)
    expected = _direct_deform_conv(
        x.detach().double().numpy(), offset.detach().double().numpy(),
        conv.weight.detach().double().numpy(), None, None, 1,
    )
    assert out.shape == (2, 4, 5, 6)
    assert np.allclose(out.detach().numpy(), expected, atol=1e-4)
    out.sum().backward()  # the CPU backward raised NotImplementedError before the patch
    for t in [x, offset, conv.weight]:
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_modulated_deform_conv_matches_direct_computation():
    torch.manual_seed(1)
    conv = ModulatedDeformConv(2, 3, kernel_size=3, padding=1, bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(1, 2, 4, 4)
    offset = torch.randn(1, 18, 4, 4)
    mask = torch.rand(1, 9, 4, 4)
    out = conv(x, offset, mask)
    expected = _direct_deform_conv(
        x.double().numpy(), offset.double().numpy(), conv.weight.detach().double().numpy(),
        conv.bias.detach().double().numpy(), mask.double().numpy(), 1,
    )
    assert np.allclose(out.detach().numpy(), expected, atol=1e-4)


def test_deform_conv_with_zero_offset_is_a_convolution():
    torch.manual_seed(2)
    conv = DeformConv(4, 6, kernel_size=3, padding=1, groups=2, bias=False)
    x = torch.randn(1, 4, 7, 7)
    out = conv(x, torch.zeros(1, 18, 7, 7))
    ref = torch.nn.functional.conv2d(x, conv.weight, padding=1, groups=2)
    assert torch.allclose(out, ref, atol=1e-5)


@needs_no_c_ops
def test_rotated_ops_raise_a_clear_error():
    from detectron2.layers import ROIAlignRotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
    with pytest.raises(RuntimeError, match=r"built without its C\+\+ ops.*box_iou_rotated"):
        pairwise_iou_rotated(boxes, boxes)
    pooler = ROIAlignRotated((2, 2), spatial_scale=1.0, sampling_ratio=0)
    with pytest.raises(RuntimeError, match=r"built without its C\+\+ ops"):
        pooler(torch.rand(1, 1, 8, 8), torch.tensor([[0.0, 4.0, 4.0, 2.0, 2.0, 0.0]]))


@needs_no_c_ops
def test_fast_cocoeval_raises_a_clear_error():
    from pycocotools.coco import COCO

    from detectron2.evaluation.fast_eval_api import COCOeval_opt

    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 10, "height": 10}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16,
             "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "a"}],
    }
    gt.createIndex()
    dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}])
    with pytest.raises(RuntimeError, match=r"built without its C\+\+ ops.*COCOeval"):
        COCOeval_opt(gt, dt, "bbox").evaluate()


def test_pillow_linear_default_is_bilinear():
    from PIL import Image

    from detectron2.data.transforms import ExtentTransform

    t = ExtentTransform(src_rect=(0, 0, 8, 8), output_size=(4, 4))
    assert t.interp == Image.BILINEAR
    out = t.apply_image(np.full((8, 8, 3), 100, dtype=np.uint8))
    assert out.shape == (4, 4, 3) and int(out[1, 1, 0]) == 100


def test_numpy_aliases_class_histogram():
    from detectron2.data.build import print_instances_class_histogram

    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 1}, {"category_id": 1}]}]
    print_instances_class_histogram(dicts, ["a", "b"])  # np.int raised AttributeError before


def test_model_zoo_without_pkg_resources():
    from detectron2 import model_zoo

    with pytest.raises(RuntimeError, match="not available in Model Zoo"):
        model_zoo.get_config_file("no/such/config.yaml")


def test_export_imports_without_caffe2():
    # detectron2 0.6 imported its caffe2 exporter unconditionally; the patch guards it as main does
    proc = _run_fresh("import detectron2.export as e\nprint(e.TracingAdapter.__name__)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "TracingAdapter"
    assert _c_fallback.PATCH_LEVEL >= 2, "an older patched build: rerun tools/setup.sh"


def _patch(package, path):
    return subprocess.run([sys.executable, str(PATCH_SCRIPT), package, str(path)],
                          capture_output=True, text=True, timeout=60)


def test_patch_script_fails_loudly_on_unexpected_source(tmp_path):
    tree = tmp_path / "d2"
    (tree / "detectron2" / "layers").mkdir(parents=True)
    (tree / "detectron2" / "__init__.py").write_text("")
    (tree / "detectron2" / "layers" / "deform_conv.py").write_text("import torch\n")
    done = _patch("detectron2", tree)
    assert done.returncode == 1 and re.search(r"deform_conv\.py.*from detectron2", done.stderr)
    done = _patch("detectron2", tmp_path / "nowhere")
    assert done.returncode == 1 and "not a detectron2 source tree" in done.stderr


def test_numpy_aliases_are_replaced_and_sized_types_kept(tmp_path):
    (tmp_path / "eval.py").write_text("a = np.int\nb = np.int64\nc = np.float_\nd = np.bool\n"
                                      "e = np.str")
    done = _patch("lvis", tmp_path)
    assert done.returncode == 0 and "3 numpy alias(es)" in done.stdout
    assert (tmp_path / "eval.py").read_text() == \
        "a = int\nb = np.int64\nc = np.float_\nd = bool\ne = str"


def test_installed_lvis_has_no_removed_numpy_aliases(tmp_path):
    import lvis.eval

    shutil.copy(lvis.eval.__file__, tmp_path / "eval.py")  # patched in a copy, if at all
    done = _patch("lvis", tmp_path)
    assert "lvis already patched" in done.stdout, "run tools/setup.sh (lvis np.float patch)"
