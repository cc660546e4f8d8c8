"""The package's module layout, read from the source with `ast` (nothing is imported).

Every ``bitcipher`` import counts: at module level and inside functions, absolute and
relative, ``import a.b`` and ``from a import b`` (an edge to module ``a.b`` when it is one,
else to ``a``).

(a) The import graph between modules has no cycle.

(b) No module imports a private name (``from x import _y``) from another module: what
    another module needs is public and named for what it is. This holds for ``jobs/``,
    ``benchmarks/`` and ``tests/`` too.

(c) Layers, lowest first; a module imports only from its own layer or lower ones:

    0. base: ``errors``, ``options``, ``keys`` (the key encodings, NumPy only)
    1. ``runtime``, ``lake``: Spark sessions and storage, the lake's tables and history
       (one layer: the session reads the lake's S3 settings from ``lake.storage``)
    2. ``stages``: the build's steps (corpus, tokenize, unigrams, cooccurrences, cipher,
       vectors, and ``merge``, the fused cooccurrences + vectors task)
    3. ``finish``: from a run's vocabulary to its published tables, shared by the build and
       the refresh
    4. ``refresh``: the count store, its totals and the incremental refresh
    5. ``build``: the whole build, which leaves the count store and totals a refresh starts
       from (through ``refresh``'s counting and bucket tasks)
    6. ``query``: reading a lake (fast read, keyed vectors, SQL server)
    7. ``evaluation``: benchmarks of the vectors, through ``query``
    8. ``cli`` (and ``__main__``): the command line, which drives every layer

    ``bitcipher/__init__.py`` (the package's public face) imports from several layers and is
    exempt as an importer; importing it (``from bitcipher import build``) counts as importing
    the top layer, so no module inside the package does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import bitcipher

PACKAGE = Path(bitcipher.__file__).resolve().parent
REPO = Path(__file__).resolve().parents[1]
SCRIPT_DIRS = ("jobs", "benchmarks", "tests")

LAYERS = [
    ("base", ["bitcipher.errors", "bitcipher.options", "bitcipher.keys"]),
    ("runtime/lake", ["bitcipher.runtime", "bitcipher.lake"]),
    ("stages", ["bitcipher.stages"]),
    ("finish", ["bitcipher.finish"]),
    ("refresh", ["bitcipher.incremental"]),
    ("build", ["bitcipher.builder"]),
    ("query", ["bitcipher.query"]),
    ("evaluation", ["bitcipher.evaluation"]),
    ("cli", ["bitcipher.cli", "bitcipher.__main__", "bitcipher"]),
]
EXEMPT_IMPORTERS = {"bitcipher"}  # bitcipher/__init__.py

# Private names still imported across modules in files owned elsewhere, until they are
# renamed: (file, module, name). An entry that no longer matches fails the test, so the list
# only shrinks.
PENDING: set = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def where(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def absolute(module: str, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, relative imports resolved against `module`."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package(module):
        base.pop()
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, int]]:
    """(imported bitcipher module, line) of every import in `module`."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"), str(MODULES[module]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = absolute(module, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.append((sub if sub in MODULES else source, node.lineno))
    return [(name, line) for name, line in found
            if name == "bitcipher" or name.startswith("bitcipher.")]


def graph() -> dict[str, set[str]]:
    edges = {}
    for module in MODULES:
        targets = set()
        for name, _ in imports(module):
            assert name in MODULES, f"{module} imports {name}, which is not a module of the package"
            if name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != "bitcipher" and module.startswith(prefix + ".")):
                return rank
    raise AssertionError(f"module {module} belongs to no layer: add it to LAYERS in "
                         f"{Path(__file__).name}")


def private_imports(path: Path, module: str | None = None) -> list[tuple[str, str, int]]:
    """(source module, private name, line) of every ``from x import _y`` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = absolute(module, node) if module and node.level else (node.module or "")
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found.append((source, name, node.lineno))
    return found


def test_the_walk_sees_the_package():
    assert {"bitcipher", "bitcipher.keys", "bitcipher.builder", "bitcipher.stages.merge",
            "bitcipher.incremental.run", "bitcipher.cli"} <= set(MODULES)
    assert "bitcipher.keys" in graph()["bitcipher.stages.cooccurrences"]
    assert "bitcipher.incremental.totals" in graph()["bitcipher.incremental.run"]  # from pkg import mod
    relative = [ast.parse(text).body[0] for text in
                ("from ..lake import tables", "from . import keys", "from .vectors import post")]
    assert [absolute("bitcipher.stages.merge", node) for node in relative] == [
        "bitcipher.lake", "bitcipher.stages", "bitcipher.stages.vectors"]
    assert absolute("bitcipher.stages", relative[1]) == "bitcipher.stages"
    assert absolute("bitcipher", relative[1]) == "bitcipher"


def test_imports_have_no_cycle():
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str):
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_no_private_name_is_imported_from_another_module():
    found = []
    for module, path in MODULES.items():
        found += [f"{where(path)}:{line}: from {source} import {name}"
                  for source, name, line in private_imports(path, module)]
    pending = set()
    for folder in SCRIPT_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for source, name, line in private_imports(path):
                if (rel, source, name) in PENDING:
                    pending.add((rel, source, name))
                else:
                    found.append(f"{rel}:{line}: from {source} import {name}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)
    assert pending == PENDING, (f"renamed already: remove {sorted(PENDING - pending)} from "
                                f"PENDING in {Path(__file__).name}")


def test_lower_layers_never_import_upper_ones():
    wrong = []
    for module in MODULES:
        if module in EXEMPT_IMPORTERS:
            continue
        for name, line in imports(module):
            if layer(name) > layer(module):
                wrong.append(f"{where(MODULES[module])}:{line}: {module} "
                             f"({LAYERS[layer(module)][0]}) imports {name} "
                             f"({LAYERS[layer(name)][0]})")
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)
