#!/usr/bin/env bash
# One-command, idempotent setup of everything the project needs, into a virtual environment.
#
#   bash tools/setup.sh            # creates/updates ./.venv
#   LDA_VENV=/path/to/venv bash tools/setup.sh
#
# 1. torch / torchvision at the versions pinned in requirements/constraints.txt;
# 2. detectron2: kept as it is if an official build with its C++ ops (detectron2._C) is importable
#    or if a build patched by this script at the current patch level is already installed (an
#    older patched build is rebuilt); otherwise the pb1-detectron2 0.6
#    sdist (detectron2's Python sources) is fetched with `pip download` (pip's index, proxy and
#    wheelhouse settings apply), checked against its sha256, patched by
#    tools/compat_patches.py (compatibility with current torch/numpy/Pillow/setuptools, C++
#    extension skipped) and installed;
# 3. this project (editable) with fvcore, lvis, pycocotools, opencv-python and the test tools;
# 4. lvis 0.5.3 (its last release) patched in place for numpy >= 1.24 (np.float in LVISEval).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LDA_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
CONSTRAINTS=$ROOT/requirements/constraints.txt
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/projects_lda

# detectron2's Python sources, as re-uploaded to PyPI (detectron2 itself is not on PyPI).
D2_SDIST="pb1-detectron2==0.6"
D2_SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY=$VENV/bin/python
PIP=("$PY" -m pip --disable-pip-version-check)

log "torch, torchvision (pinned in requirements/constraints.txt)"
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=64" wheel torch torchvision

d2_state=$("$PY" - "$ROOT/tools" <<'EOF'
import importlib.util
if importlib.util.find_spec("detectron2") is None:
    print("missing")
elif importlib.util.find_spec("detectron2._C") is not None:
    print("official")
elif importlib.util.find_spec("detectron2._c_fallback") is not None:
    import re, sys
    sys.path.insert(0, sys.argv[1])
    from compat_patches import PATCH_LEVEL
    # the installed patches' level, read from the file (an install older than a patch: rebuilt)
    text = open(importlib.util.find_spec("detectron2._c_fallback").origin).read()
    found = re.search(r"^PATCH_LEVEL = (\d+)", text, re.M)
    print("patched" if found and int(found.group(1)) >= PATCH_LEVEL else "outdated")
else:
    print("unpatched")
EOF
)
case "$d2_state" in
  official) log "detectron2 with C++ ops already installed: kept as it is" ;;
  patched) log "detectron2 (patched pb1-detectron2 0.6) already installed" ;;
  *)
    log "building detectron2 0.6 from the pb1-detectron2 sdist (state: $d2_state)"
    mkdir -p "$CACHE"
    tarball=$CACHE/pb1-detectron2-0.6.tar.gz
    if [ ! -f "$tarball" ] || ! echo "$D2_SDIST_SHA256  $tarball" | sha256sum -c --status; then
      dl=$(mktemp -d)
      # through pip, so its configuration applies (index URL, proxy, a local wheelhouse);
      # --no-build-isolation: the sdist's setup.py imports torch (installed above)
      "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "$D2_SDIST" -d "$dl"
      found=("$dl"/pb1[-_]detectron2-0.6.tar.gz)
      [ -f "${found[0]}" ] || { echo "[setup] pip download gave no sdist of $D2_SDIST" >&2; exit 1; }
      mv "${found[0]}" "$tarball"
      rm -rf "$dl"
    fi
    echo "$D2_SDIST_SHA256  $tarball" | sha256sum -c --status \
      || { echo "[setup] sha256 mismatch for $tarball" >&2; exit 1; }
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    tar xzf "$tarball" -C "$work"
    "$PY" "$ROOT/tools/compat_patches.py" detectron2 "$work/pb1-detectron2-0.6"
    reinstall=()
    [ "$d2_state" = outdated ] && reinstall=(--force-reinstall --no-deps)  # same version, new patches
    "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-build-isolation "${reinstall[@]}" "$work/pb1-detectron2-0.6"
    ;;
esac

log "projects_lda (editable) with fvcore, lvis, pycocotools, opencv-python, test tools, onnx"
"${PIP[@]}" install -q -c "$CONSTRAINTS" --no-build-isolation -e "$ROOT[dev,export,icons]"

log "lvis: numpy compatibility"
lvis_dir=$("$PY" -c "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('lvis').origin))")
"$PY" "$ROOT/tools/compat_patches.py" lvis "$lvis_dir"

"$PY" -c "import detectron2, projects_lda; print('[setup] ok: detectron2', detectron2.__version__)"
log "activate with: source $VENV/bin/activate"
