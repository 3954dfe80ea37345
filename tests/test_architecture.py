"""The package's import graph: no cycles, a pure ``core``, and imports only downwards through the layers.

Every ``.py`` file under ``trpojax/`` is parsed with :mod:`ast` (nothing is imported). Every import statement
counts, at module level or inside a function (a lazy import is still a dependency), except those under an
``if TYPE_CHECKING:`` block, which never run. ``from trpojax.x import y`` depends on ``trpojax.x.y`` when that
is a module of the package and on ``trpojax.x`` otherwise; importing a submodule is not a dependency on its
parent package's ``__init__`` (Python runs it, but that is how imports work, not a choice of the importer).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "trpojax"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

# Layer rank of each top-level part of the package (``trpojax.<part>...``); the root ``__init__`` (the public
# facade) is the top. A module may import modules of its own rank or lower, and never a different part of
# the same rank.
LAYERS = {
    "core": 0,
    "envs": 1,
    "networks": 1,
    "verify": 1,
    "algos": 2,
    "config": 3,
    "trainer": 4,
    "fastcpu": 5,
    "train": 6,
    "sweep": 7,
    "search": 8,
    "evaluate": 9,
    "compare": 9,
    PACKAGE: 10,
}


def module_name(path: Path, root: Path) -> str:
    """``trpojax/algos/__init__.py`` -> ``trpojax.algos``; ``trpojax/algos/trpo.py`` -> ``trpojax.algos.trpo``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Module name -> file of every module under ``root``."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST):
    """Every Import/ImportFrom node in ``node`` except those in the body of an ``if TYPE_CHECKING:``."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for stmt in node.orelse:  # the else branch does run
            yield from _imports(stmt)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _imports(child)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest prefix of dotted ``name`` that is a package module (None outside the package)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imported_modules(source: str, this: str, is_package: bool, modules: set[str]) -> list[tuple[int, str, str]]:
    """``(line, statement, target module)`` of each package module that ``source`` (module ``this``) imports."""
    found = []
    for node in _imports(ast.parse(source)):
        text = ast.unparse(node)
        if isinstance(node, ast.Import):
            targets = [_resolve(alias.name, modules) for alias in node.names]
        else:
            if node.level:  # relative: the current package for level 1, its parent for 2, ...
                anchor = this.split(".") if is_package else this.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if alias.name != "*" and sub in modules else _resolve(base, modules))
        found.extend((node.lineno, text, target) for target in targets if target is not None)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, dict[str, list[str]]]:
    """module -> {imported module: ["path:line: statement", ...]} over the package under ``root``."""
    files = package_modules(root)
    names = set(files)
    graph: dict[str, dict[str, list[str]]] = {name: {} for name in files}
    for name, path in files.items():
        where = path.relative_to(root.parent)
        is_package = path.name == "__init__.py"
        for line, text, target in imported_modules(path.read_text(), name, is_package, names):
            if target != name:
                graph[name].setdefault(target, []).append(f"{where}:{line}: {text}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]] | dict[str, list[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the directed graph (iterative DFS), or None if it is acyclic."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(graph, white)
    for start in sorted(graph):
        if color[start] != white:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        color[start] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
                continue
            state = color.get(nxt, black)  # edges out of the graph's nodes end there
            if state == grey:
                return path[path.index(nxt) :] + [nxt]
            if state == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def part(module: str) -> str:
    """The top-level part of the package a module belongs to (``trpojax.algos.trpo`` -> ``algos``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(graph: dict[str, dict[str, list[str]]], layers: dict[str, int] = LAYERS) -> list[str]:
    """Each edge that goes up a layer, sideways between parts of one layer, or into an unranked part."""
    bad = []
    for src, targets in sorted(graph.items()):
        for dst, sites in sorted(targets.items()):
            a, b = part(src), part(dst)
            if a not in layers or b not in layers:
                unknown = a if a not in layers else b
                bad.extend(f"{site}  ({src} -> {dst}: part {unknown!r} has no layer)" for site in sites)
            elif layers[b] > layers[a]:
                bad.extend(f"{site}  ({src} [{a}={layers[a]}] -> {dst} [{b}={layers[b]}]: upward)" for site in sites)
            elif layers[b] == layers[a] and a != b:
                bad.extend(f"{site}  ({src} -> {dst}: sideways between {a} and {b}, same layer)" for site in sites)
    return bad


def core_violations(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """Each import from a module of ``trpojax.core`` of a package module outside ``trpojax.core``."""
    core = f"{PACKAGE}.core"
    inside = lambda m: m == core or m.startswith(core + ".")  # noqa: E731
    return [
        f"{site}  ({src} -> {dst})"
        for src, targets in sorted(graph.items())
        if inside(src)
        for dst, sites in sorted(targets.items())
        if not inside(dst)
        for site in sites
    ]


# --- the package --------------------------------------------------------------------------------------------


def test_graph_sees_the_package():
    graph = import_graph()
    assert len(graph) > 30
    assert f"{PACKAGE}.algos.trpo" in graph[f"{PACKAGE}.algos"]  # from trpojax.algos import trpo, ...
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.trainer.program"]
    assert f"{PACKAGE}.core.hparams" in graph[f"{PACKAGE}.config"]
    # TYPE_CHECKING-only imports are not edges (networks names Config and EnvSpec only in annotations).
    assert f"{PACKAGE}.config" not in graph[f"{PACKAGE}.networks"]
    # Every part of the package has a layer.
    assert {part(m) for m in graph} <= set(LAYERS), sorted({part(m) for m in graph} - set(LAYERS))


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle is not None:
        sites = [site for a, b in zip(cycle[:-1], cycle[1:], strict=True) for site in graph[a][b]]
        raise AssertionError("import cycle: " + " -> ".join(cycle) + "\n" + "\n".join(sites))


def test_core_imports_only_core():
    bad = core_violations(import_graph())
    assert not bad, "trpojax.core must import nothing else from trpojax:\n" + "\n".join(bad)


def test_imports_follow_the_layers():
    bad = layer_violations(import_graph())
    assert not bad, f"{len(bad)} import(s) against the layering {LAYERS}:\n" + "\n".join(bad)


def module_getattr_lines(source: str) -> list[int]:
    """Lines of module-level ``def __getattr__`` (PEP 562 lazy attributes) in ``source``."""
    return [
        node.lineno
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "__getattr__"
    ]


def test_facade_has_no_module_getattr():
    lines = module_getattr_lines((PACKAGE_DIR / "__init__.py").read_text())
    assert not lines, f"trpojax/__init__.py:{lines[0]}: module-level __getattr__ (lazy attributes hide imports)"


# --- the checker itself can fail ----------------------------------------------------------------------------


def test_checkers_detect_what_they_look_for(tmp_path):
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    cycle = find_cycle({"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": []})
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"x": ["x"]}) == ["x", "x"]

    # A tiny package on disk: a cycle, an upward edge, a sideways edge, core importing out, a lazy import,
    # a relative import, and a TYPE_CHECKING import that must not count.
    pkg = tmp_path / PACKAGE
    files = {
        "__init__.py": "",
        "core/__init__.py": "",
        "core/maths.py": "def f():\n    from trpojax.envs import base\n",  # lazy, out of core, upward
        "envs/__init__.py": "",
        "envs/base.py": "from trpojax import networks\n",  # sideways (same layer)
        "networks.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trpojax.config\n",
        "config.py": "from . import trainer\n",  # relative, upward
        "trainer/__init__.py": "from trpojax.trainer.program import run\n",
        "trainer/program.py": "import trpojax.config\n",  # with config.py -> trainer: a cycle
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    graph = import_graph(pkg)
    lazy = {"trpojax.envs.base": ["trpojax/core/maths.py:2: from trpojax.envs import base"]}
    assert graph["trpojax.core.maths"] == lazy
    assert graph["trpojax.networks"] == {}  # TYPE_CHECKING
    assert set(graph["trpojax.config"]) == {"trpojax.trainer"}
    assert set(graph["trpojax.trainer.program"]) == {"trpojax.config"}  # no edge to trpojax (the parent)
    cycle = find_cycle(graph)
    assert cycle is not None and {"trpojax.config", "trpojax.trainer", "trpojax.trainer.program"} == set(cycle)
    assert len(core_violations(graph)) == 1
    bad = layer_violations(graph)
    assert any("core.maths" in v and "upward" in v for v in bad), bad
    assert any("envs.base" in v and "sideways" in v for v in bad), bad
    assert any(v.startswith("trpojax/config.py:1: from . import trainer") and "upward" in v for v in bad), bad
    assert len(bad) == 3, bad
    assert module_getattr_lines("import os\n\n\ndef __getattr__(name):\n    pass\n") == [4]
    assert module_getattr_lines("class A:\n    def __getattr__(self, name):\n        pass\n") == []
