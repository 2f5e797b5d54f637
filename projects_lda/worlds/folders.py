"""
Generated folders written safely while other processes may read or write the same one: what the
generators' caches (:func:`projects_lda.worlds.embedded.ensure_embedded_lvis`,
:func:`projects_lda.worlds.icons.ensure_icon_lvis`) share. A leaf module.
"""
import json
import os
import shutil
import tempfile

__all__ = ["generate_into_place", "read_meta"]


def generate_into_place(root, generate, outdated):
    """
    Generate into a temporary folder next to ``root`` (``generate(tmp)``), then rename it to
    ``root``. ``outdated()`` says whether ``root`` holds a generated folder that is not the one
    wanted: it is set aside and removed. A ``root`` that another process created meanwhile is
    kept (the caller checks it); a reader of ``root`` never sees a half-written folder.
    """
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private
    stale = tmp + "-stale"
    try:
        generate(tmp)
        if outdated():
            try:
                os.rename(root, stale)  # ours but outdated: set it aside
            except OSError:
                pass  # moved meanwhile by another process
        try:
            os.rename(tmp, root)
        except OSError:
            # ``root`` exists (e.g. created meanwhile by another process): checked by the caller
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def read_meta(root, meta_file, generator):
    """The parameters file ``meta_file`` of ``root`` if ``generator`` wrote it (its "generator"
    field), else None (absent, unreadable, or another generator's)."""
    try:
        with open(os.path.join(root, meta_file)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("generator") == generator else None
