"""
The package's layers (docs/design.md, "Layers"): every import between two modules of
projects_lda, function-level ones included, points down the layer order, and no modules import
each other in a circle. The imports are read from the source with ``ast``; nothing is imported.

    python tests/test_layers.py [PACKAGE_DIR]   # the import graph's counts and its faults
"""
import ast
import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "projects_lda"

# Bottom first. Parts on one line sit side by side: neither imports the other. A part may import
# the parts of the lines below its own. "projects_lda" is the package's __init__.py (it registers
# the models and datasets on import); nothing in the package imports it.
LAYERS = (
    ("data",),
    ("worlds",),
    ("evaluation", "modeling"),
    ("config",),
    ("engine",),
    ("deploy",),
    ("app",),
    ("benchmark",),
    ("projects_lda",),
)
LEVEL = {part: i for i, line in enumerate(LAYERS) for part in line}


def module_names(package_dir):
    """``{dotted module name: path}`` of every ``.py`` file under ``package_dir``."""
    package_dir = Path(package_dir)
    root = package_dir.name
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [root, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_package(path):
    return path.name == "__init__.py"


def import_graph(package_dir):
    """
    ``(modules, arrows)``: the package's module names and ``{(importer, imported): line}``, one
    entry per pair of modules, with the line of the first such import. ``from a import b``
    counts as an import of ``a.b`` when that is a module, else of ``a``.
    """
    modules = module_names(package_dir)
    arrows = {}
    for name, path in modules.items():
        package = name if _is_package(path) else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                    for a in node.names
                ]
            for target in targets:
                while target and target not in modules:  # "import a.b.c" of a name in a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    arrows.setdefault((name, target), node.lineno)
    return modules, arrows


def part_of(module):
    """The package part a module belongs to: ``projects_lda.data.loader`` -> ``data``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_arrows(arrows):
    """The arrows from a part to one on its own line or above (or to a part of no line)."""
    bad = []
    for (src, dst), line in sorted(arrows.items()):
        a, b = part_of(src), part_of(dst)
        if a == b:
            continue
        if a not in LEVEL or b not in LEVEL or LEVEL[b] >= LEVEL[a]:
            bad.append((src, dst, line))
    return bad


def circles(modules, arrows):
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    succ = {m: [] for m in modules}
    for src, dst in arrows:
        succ[src].append(dst)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return sorted(found)


def _where(modules, src, line):
    return f"{os.path.relpath(modules[src], PACKAGE.parent)}:{line}"


def test_every_part_has_a_layer():
    modules, _ = import_graph(PACKAGE)
    assert sorted({part_of(m) for m in modules} - set(LEVEL)) == []


def test_imports_point_down_the_layers():
    modules, arrows = import_graph(PACKAGE)
    faults = [f"{_where(modules, s, n)}: {s} imports {d} ({part_of(s)} -> {part_of(d)})"
              for s, d, n in upward_arrows(arrows)]
    assert faults == [], ("imports up the layers (tests/test_layers.py LAYERS):\n"
                          + "\n".join(faults))


def test_no_import_circle():
    modules, arrows = import_graph(PACKAGE)
    faults = []
    for group in circles(modules, arrows):
        inside = [f"{_where(modules, s, n)}: {s} imports {d}"
                  for (s, d), n in sorted(arrows.items()) if s in group and d in group]
        faults.append(" <-> ".join(group) + "\n  " + "\n  ".join(inside))
    assert faults == [], "modules that import each other:\n" + "\n".join(faults)


def test_the_graph_reader_resolves_relative_and_function_level_imports(tmp_path):
    pkg = tmp_path / "projects_lda"
    (pkg / "data").mkdir(parents=True)
    (pkg / "engine").mkdir()
    (pkg / "__init__.py").write_text("from . import data\n")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "loader.py").write_text("def f():\n    from ..engine import hooks\n")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "hooks.py").write_text("from ..data.loader import f\nimport os\n")
    modules, arrows = import_graph(pkg)
    assert arrows == {
        ("projects_lda", "projects_lda.data"): 1,
        ("projects_lda.data.loader", "projects_lda.engine.hooks"): 2,
        ("projects_lda.engine.hooks", "projects_lda.data.loader"): 1,
    }
    assert upward_arrows(arrows) == [("projects_lda.data.loader", "projects_lda.engine.hooks", 2)]
    assert circles(modules, arrows) == [["projects_lda.data.loader", "projects_lda.engine.hooks"]]


if __name__ == "__main__":
    package_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE
    modules, arrows = import_graph(package_dir)
    up = upward_arrows(arrows)
    groups = circles(modules, arrows)
    print(f"{len(modules)} modules, {len(arrows)} arrows, {len(groups)} circles "
          f"({sum(map(len, groups))} modules in them), {len(up)} upward arrows")
    for group in groups:
        print("circle:", " <-> ".join(group))
    for src, dst, line in up:
        print(f"up: {src}:{line} -> {dst}")
