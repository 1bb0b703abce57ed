"""The package layout stays what docs/code-layout.md says: one-idea modules, imports pointing down, no private
names crossing.

The import graph is read with ``ast`` from the source (nothing is imported), and function-level (lazy) imports
count like module-level ones: a lazy import upward is still a layer leaning on the one above it. The checks
run on the real ``bench/`` and, to show that each can fail, on small packages written to ``tmp_path``.
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
MAX_LINES = 400

# Bottom to top. A module may import from its own unit (its subpackage, or itself for a top-level module)
# and from units in lower layers; units in one layer do not import each other. Why this order:
# - errors < config, paths, files (the one atomic writer), backoff (halving a batch that does not fit, for
#   prediction and latency alike), table_columns (what a printed table declares about
#   its columns, which tables of every layer declare) < precision, environment: the foundation every stage reads;
# - evaluation (the metric table, saved scores, bootstrap) is pure numpy/scikit-learn and needs no other
#   stage; a protocol names its selection metric from the table, and a training loop needs validation
#   metrics, so evaluation sits below protocol and train;
# - timers (CUDA/CPU step timers, the median's confidence interval) sit beside evaluation, on the device
#   fingerprint of environment: `bench latency` times forward passes and `bench profile` training steps with
#   them, so neither latency nor train borrows the other's;
# - models, data and protocol are independent of one another;
# - latency and train are independent of each other too: latency needs a model, train a model, data and
#   a protocol, and both take their timers from below;
# - runs puts train and latency together into records; reports read records; gates check reports; the
#   cli is the top.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("config", "paths", "files", "table_columns", "backoff"),
    ("precision", "environment"),
    ("evaluation", "timers"),
    ("models", "data", "protocol"),
    ("latency", "train"),
    ("runs",),
    ("reports",),
    ("gates",),
    ("cli",),
    ("__main__",),  # python -m bench: the command, where its console script is not installed
]

# Allow-lists: empty, and a test fails on an entry that no longer matches a violation, so none outlives its
# reason. Add one only with a comment saying which change will remove it.
OVERSIZED: set[str] = set()
UPWARD: set[tuple[str, str]] = set()
PRIVATE: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module imported from (a module of the package)
    name: str | None  # the name imported from it, None for a whole module
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_imports(root: Path) -> tuple[dict[str, Path], list[Import]]:
    """Every module under ``root`` (a package folder) and every import of the package's own modules."""
    package = root.name
    modules = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    imports = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imports += [Import(name, a.name, None, node.lineno) for a in node.names if _inside(a.name, package)]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, name, is_package)
                if not _inside(base, package):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:  # `from bench.data import entries`: the module itself
                        imports.append(Import(name, submodule, None, node.lineno))
                    else:
                        imports.append(Import(name, base, alias.name, node.lineno))
    return modules, imports


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = importer.split(".") if is_package else importer.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def unit(module: str) -> str:
    """The top-level part of the package a module belongs to (``bench.data.splits`` -> ``data``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str, layers: list[tuple[str, ...]]) -> int:
    for index, names in enumerate(layers):
        if unit(module) in names:
            return index
    raise AssertionError(f"{module}: its unit {unit(module)!r} is in no layer; add it to LAYERS in {__file__}")


def upward_imports(imports: list[Import], layers: list[tuple[str, ...]]) -> set[tuple[str, str]]:
    """(importer, target) pairs where a module imports from its own layer's other units or from above."""
    found = set()
    for imp in imports:
        if not unit(imp.importer) or unit(imp.importer) == unit(imp.target):
            continue
        if layer_of(imp.target, layers) >= layer_of(imp.importer, layers):
            found.add((imp.importer, imp.target))
    return found


def private_imports(imports: list[Import]) -> set[tuple[str, str]]:
    """(importer, what) where ``what`` is a ``_name`` of another module, or a ``_module`` of another package."""
    found = set()
    for imp in imports:
        if imp.name is not None and imp.name.startswith("_") and not imp.name.startswith("__"):
            found.add((imp.importer, f"{imp.target}.{imp.name}"))
        parts = imp.target.split(".")
        for depth, part in enumerate(parts):
            owner = ".".join(parts[:depth])  # the package the private module belongs to
            if part.startswith("_") and not part.startswith("__") and not _inside(imp.importer, owner):
                found.add((imp.importer, imp.target))
    return found


def cycles(imports: list[Import], ignored: set[tuple[str, str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), the ``ignored`` edges left out."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.importer != imp.target and (imp.importer, imp.target) not in ignored:
            graph.setdefault(imp.importer, set()).add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def oversized(modules: dict[str, Path], root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in modules.values() if len(p.read_text().splitlines()) > MAX_LINES}


# ------------------------------------------------------------------------------------------------ the real package

MODULES, IMPORTS = read_imports(BENCH)


def test_no_module_over_the_line_limit():
    found = oversized(MODULES, BENCH)
    assert found - OVERSIZED == set(), f"modules over {MAX_LINES} lines: split them into one idea each"
    assert OVERSIZED - found == set(), "no longer over the limit: remove them from OVERSIZED"


def test_every_unit_has_a_layer():
    for module in MODULES:
        if unit(module):
            layer_of(module, LAYERS)


def test_imports_point_down_the_layers():
    found = upward_imports(IMPORTS, LAYERS)
    assert found - UPWARD == set(), "imports from the same layer or above (see LAYERS for the order)"
    assert UPWARD - found == set(), "fixed: remove them from UPWARD"


def test_no_import_cycle():
    assert cycles(IMPORTS, ignored=UPWARD) == []


def test_no_private_name_crosses_a_module():
    found = private_imports(IMPORTS)
    assert found - PRIVATE == set(), "make the name public (and document it) or keep its use in its module"
    assert PRIVATE - found == set(), "fixed: remove them from PRIVATE"


# ------------------------------------------------------------------------------------------------ the checks can fail


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


TOY_LAYERS = [("base",), ("low", "side"), ("high",)]


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"low/a.py": "from pkg.high.b import f\n", "high/b.py": ""}, {("pkg.low.a", "pkg.high.b")}),
        ({"low/a.py": "def f():\n    import pkg.high.b\n", "high/b.py": ""}, {("pkg.low.a", "pkg.high.b")}),
        ({"low/a.py": "from pkg.side import c\n", "side/c.py": ""}, {("pkg.low.a", "pkg.side.c")}),
        ({"high/b.py": "from pkg.low.a import f\nfrom pkg.base import g\n", "low/a.py": "", "base.py": ""}, set()),
        ({"low/a.py": "from . import d\n", "low/d.py": ""}, set()),
    ],
    ids=["upward", "lazy upward", "sideways", "downward", "same unit"],
)
def test_upward_imports_are_found(tmp_path, files, expected):
    _, imports = read_imports(_package(tmp_path, files))
    assert upward_imports(imports, TOY_LAYERS) == expected


def test_cycles_are_found(tmp_path):
    root = _package(
        tmp_path,
        {"low/a.py": "from pkg.low.b import x\n", "low/b.py": "def f():\n    from pkg.low.a import y\n", "base.py": ""},
    )
    _, imports = read_imports(root)
    assert cycles(imports, ignored=set()) == [["pkg.low.a", "pkg.low.b"]]
    assert cycles(imports, ignored={("pkg.low.b", "pkg.low.a")}) == []


def test_private_imports_are_found(tmp_path):
    root = _package(
        tmp_path,
        {
            "low/a.py": "from pkg.low.b import _hidden, shown\nfrom pkg.low._impl import ok\n",
            "low/b.py": "",
            "low/_impl.py": "",
            "high/c.py": "from pkg.low._impl import reader\n",
        },
    )
    _, imports = read_imports(root)
    assert private_imports(imports) == {("pkg.low.a", "pkg.low.b._hidden"), ("pkg.high.c", "pkg.low._impl")}


def test_oversized_modules_are_found(tmp_path):
    root = _package(tmp_path, {"low/long.py": "x = 1\n" * (MAX_LINES + 1), "low/short.py": "x = 1\n" * MAX_LINES})
    modules, _ = read_imports(root)
    assert oversized(modules, root) == {"low/long.py"}
