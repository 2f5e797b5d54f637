#!/usr/bin/env python
"""
Make detectron2 0.6 and lvis 0.5.3 work on the current stack (torch 2.x, numpy 2, Pillow 10+,
setuptools without pkg_resources).

detectron2: its source tree is patched *before* it is installed.

``tools/setup.sh`` builds detectron2 from the ``pb1-detectron2==0.6`` source distribution, which
carries no C++/CUDA sources. This script edits that source tree in place so that the installed
detectron2 works *on its own* (whatever a user imports first):

1. ``detectron2._C`` is missing. Modules that import it at module level import a stand-in from
   ``detectron2/_c_fallback.py`` instead: the real extension when it exists, otherwise an object
   whose attributes raise a clear error ("built without its C++ ops"). Deformable convolution is
   routed to ``torchvision.ops.deform_conv2d`` (forward and backward, CPU and CUDA) when the
   extension is missing; rotated-box ops and the C++ COCOeval raise that clear error.
2. ``PIL.Image.LINEAR`` (removed in Pillow 10) -> ``Image.BILINEAR`` (the same filter).
3. ``np.int`` / ``np.float`` / ``np.str`` / ``np.bool`` (removed in numpy 1.24) -> builtins.
4. ``pkg_resources`` (gone from recent setuptools) -> ``importlib.resources``.
5. ``detectron2/export/__init__.py`` imports its caffe2 exporter unconditionally (current torch
   ships no caffe2, so ``import detectron2.export`` fails although its TorchScript and ONNX tracing
   need no caffe2): guarded as detectron2 main guards it.

``_c_fallback.py`` carries :data:`PATCH_LEVEL`; ``tools/setup.sh`` rebuilds a detectron2 patched
at a lower level (an installation made before a patch was added).

Only the lines above are touched; a full detectron2 build is never passed to this script. Each
patch is idempotent and fails loudly (naming the file and the text) if the source does not look
as expected, so a different detectron2 version cannot be half-patched silently.

lvis: the last release (0.5.3, 2020) uses ``np.float`` in ``LVISEval.accumulate`` and its sdist
does not build (its requirements.txt is missing), so the *installed* package is patched in place:
the same numpy-alias fix, in ``lvis/eval.py`` only.

Usage:
    python tools/compat_patches.py detectron2 PATH/TO/pb1-detectron2-0.6
    python tools/compat_patches.py lvis PATH/TO/site-packages/lvis
"""
import argparse
import re
import sys
from pathlib import Path

MARKER = "_c_fallback.py"
PATCH_LEVEL = 2  # raise it whenever a patch is added: setup.sh rebuilds older patched installs

C_FALLBACK = '''\
"""
Stand-in for ``detectron2._C`` (written by projects_lda's tools/compat_patches.py).

This detectron2 was built without its C++/CUDA extension. Mask R-CNN does not need it (it uses
torchvision's ``roi_align`` and ``nms``); deformable convolution falls back to
``torchvision.ops.deform_conv2d``. Rotated-box ops and the C++ COCOeval need the extension.
"""

PATCH_LEVEL = {patch_level}  # of tools/compat_patches.py; older installs are rebuilt by setup.sh

try:
    from detectron2 import _C  # noqa: F401

    HAS_C_OPS = True
except ImportError:
    HAS_C_OPS = False

    class _MissingCOps:
        def __getattr__(self, name):
            raise RuntimeError(
                f"detectron2 was built without its C++ ops (detectron2._C), so `_C.{name}` is "
                "unavailable (rotated boxes, ROIAlignRotated and the fast C++ COCOeval need it). "
                "Install an official detectron2 build with its extension to use this feature."
            )

    _C = _MissingCOps()
'''

# torchvision-backed deformable convolution, used when the C++ extension is missing.
DEFORM_FALLBACK = '''

def _check_groups(input, offset, weight, groups, deformable_groups):
    kh, kw = weight.shape[-2:]
    if input.shape[1] != weight.shape[1] * groups:
        raise ValueError(
            f"deform_conv: input has {input.shape[1]} channels, weight expects "
            f"{weight.shape[1]} x groups={groups}"
        )
    if offset.shape[1] != 2 * deformable_groups * kh * kw:
        raise ValueError(
            f"deform_conv: offset has {offset.shape[1]} channels, expected "
            f"2 x deformable_groups={deformable_groups} x {kh} x {kw}"
        )


def deform_conv(
    input, offset, weight, stride=1, padding=0, dilation=1, groups=1, deformable_groups=1,
    im2col_step=64,
):
    if HAS_C_OPS:
        return _DeformConv.apply(
            input, offset, weight, stride, padding, dilation, groups, deformable_groups,
            im2col_step,
        )
    # torchvision infers groups from the weight and offset shapes; autograd comes with it.
    _check_groups(input, offset, weight, groups, deformable_groups)
    return deform_conv2d(
        input, offset, weight, stride=_pair(stride), padding=_pair(padding),
        dilation=_pair(dilation),
    )


def modulated_deform_conv(
    input, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
    deformable_groups=1,
):
    if HAS_C_OPS:
        return _ModulatedDeformConv.apply(
            input, offset, mask, weight, bias, stride, padding, dilation, groups,
            deformable_groups,
        )
    _check_groups(input, offset, weight, groups, deformable_groups)
    return deform_conv2d(
        input, offset, weight, bias=bias, stride=_pair(stride), padding=_pair(padding),
        dilation=_pair(dilation), mask=mask,
    )
'''

C_IMPORT = "from detectron2 import _C\n"
# detectron2 main's form: the caffe2 exporter only where caffe2 is installed
EXPORT_API_GUARDED = """\
try:
    from caffe2.proto import caffe2_pb2 as _tmp  # noqa: F401
    from caffe2.python import core  # noqa: F401
except ImportError:  # caffe2 is optional (patched by projects_lda's tools/compat_patches.py)
    pass
else:
    from .api import *
"""
C_IMPORT_NEW = "from detectron2._c_fallback import _C, HAS_C_OPS  # noqa: F401\n"

# (file, old text, new text): each old text must occur exactly once.
TEXT_PATCHES = [
    ("detectron2/layers/deform_conv.py", C_IMPORT, C_IMPORT_NEW),
    ("detectron2/layers/rotated_boxes.py", C_IMPORT, C_IMPORT_NEW),
    ("detectron2/layers/roi_align_rotated.py", C_IMPORT, C_IMPORT_NEW),
    ("detectron2/evaluation/fast_eval_api.py", C_IMPORT, C_IMPORT_NEW),
    (
        "detectron2/layers/deform_conv.py",
        "deform_conv = _DeformConv.apply\nmodulated_deform_conv = _ModulatedDeformConv.apply\n",
        DEFORM_FALLBACK.lstrip("\n"),
    ),
    (
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR",
        "interp=Image.BILINEAR",
    ),
    ("detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", "import importlib.resources\n"),
    ("detectron2/export/__init__.py", "from .api import *\n", EXPORT_API_GUARDED),
    (
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", '
        "os.path.join(\"configs\", config_path)\n    )",
        'cfg_file = str(\n        importlib.resources.files("detectron2.model_zoo").joinpath('
        '"configs", config_path)\n    )',
    ),
]

# numpy aliases removed in 1.24 (np.bool came back in 2.0 as numpy's bool, but not in 1.24-1.26).
NUMPY_ALIAS = re.compile(r"\bnp\.(int|float|str|bool)\b(?!_|\d)")
NUMPY_FILES = [
    "detectron2/data/build.py",
    "detectron2/evaluation/sem_seg_evaluation.py",
    "detectron2/evaluation/pascal_voc_evaluation.py",
    "detectron2/data/datasets/pascal_voc.py",
    "detectron2/structures/masks.py",
    "detectron2/utils/visualizer.py",
    "detectron2/utils/video_visualizer.py",
]


class PatchError(RuntimeError):
    pass


def _apply_text_patch(path: Path, old: str, new: str) -> bool:
    text = path.read_text()
    if new in text and old not in text:
        return False  # already applied
    count = text.count(old)
    if count != 1:
        raise PatchError(f"{path}: expected exactly one occurrence of {old!r}, found {count}")
    path.write_text(text.replace(old, new))
    return True


def _apply_numpy_patch(path: Path) -> int:
    text = path.read_text()
    new_text, n = NUMPY_ALIAS.subn(lambda m: m.group(1), text)
    if n:
        path.write_text(new_text)
    return n


def patch_lvis(package_dir: Path) -> list:
    """Patch an installed ``lvis`` package folder; returns a list of what was changed."""
    eval_py = Path(package_dir) / "eval.py"
    if not eval_py.is_file():
        raise PatchError(f"{package_dir}: not an lvis package (no eval.py)")
    n = _apply_numpy_patch(eval_py)
    return [f"{eval_py}: {n} numpy alias(es)"] if n else []


def patch_tree(root: Path) -> list:
    """Patch the detectron2 source tree at ``root``; returns a list of what was changed."""
    root = Path(root)
    if not (root / "detectron2" / "__init__.py").is_file():
        raise PatchError(f"{root}: not a detectron2 source tree (no detectron2/__init__.py)")
    done = []
    fallback = root / "detectron2" / MARKER
    if not fallback.exists():
        fallback.write_text(C_FALLBACK.replace("{patch_level}", str(PATCH_LEVEL)))
        done.append(str(fallback.relative_to(root)))
    for rel, old, new in TEXT_PATCHES:
        if _apply_text_patch(root / rel, old, new):
            done.append(f"{rel}: {old.splitlines()[0][:60]!r}")
    for rel in NUMPY_FILES:
        n = _apply_numpy_patch(root / rel)
        if n:
            done.append(f"{rel}: {n} numpy alias(es)")
    # Skip the C++ extension: the sdist has no C++ sources to compile.
    setup_py = root / "setup.py"
    if _apply_text_patch(setup_py, "    ext_modules=get_extensions(),\n", ""):
        done.append("setup.py: ext_modules removed")
    return done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", choices=["detectron2", "lvis"])
    parser.add_argument(
        "path", type=Path, help="detectron2: unpacked pb1-detectron2 0.6 source tree; "
        "lvis: the installed lvis package folder"
    )
    args = parser.parse_args(argv)
    try:
        done = (patch_tree if args.package == "detectron2" else patch_lvis)(args.path)
    except PatchError as e:
        print(f"compat_patches: {e}", file=sys.stderr)
        return 1
    for line in done:
        print(f"patched {line}")
    if not done:
        print(f"compat_patches: {args.package} already patched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
