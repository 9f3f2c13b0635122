"""The import graph, read from the source (every import: top level, inside functions, under TYPE_CHECKING):
no circles in server/ (between modules or folders), nothing of the offline tools in the server, every arrow in
server/ pointing down the layers below, and the top-level packages importing only what they build on.

ARCHITECTURE.md explains the layers; a new top-level module of server/ must be given one here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ("scraper", "trainer", "web")  # tools that use the server's data or API, never the other way round

# Bottom to top. A module may import from its own layer or any layer below. A name ending in "/" is a package
# and covers everything under it; any other name is exactly one module.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("common/", "server.protocols", "server.errors", "server.config", "server.logs", "server.metrics",
                "server.failpoints", "server.turn_events", "server.estimate")),
    # what the core reaches through the seams in protocols.py (stores, indexes, generators), and the turn's
    # small helpers that need nothing higher
    ("backends", ("server.store/", "server.llm/", "server.prompt", "server.limits", "server.events",
                  "server.turn_details")),
    ("memory", ("server.memory/",)),
    ("core", ("server.search/", "server.chat", "server.turn_state")),
    ("keys", ("server.keys",)),
    ("edges", ("server.security/", "server.transport/")),
    ("app", ("server.app",)),
    ("main", ("server.__main__",)),
]


def _module_names() -> dict[str, Path]:
    names = {}
    for package in ("server", "common"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _module_names()


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(the name each import statement reaches, line): the submodule where `from a import b` names one."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else base), node.lineno


def _known(name: str) -> str | None:
    """The module of ours that importing `name` runs last (a.b.c not ours but a.b is: a.b), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: first line}; only our own modules, and no package's empty __init__."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, {})
        for name, line in _imported(module, path):
            target = _known(name)
            if target and target != module and target not in ("server", "common"):
                edges.setdefault(target, line)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _folder(module: str) -> str:
    """What a reader sees as one room: a sub-package of server/ (server.store) or a module beside them."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "server" else parts[0]


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for rank, (_, names) in enumerate(LAYERS):
        for name in names:
            stem = name.rstrip("/")
            covers = module == stem or (name.endswith("/") and module.startswith(stem + "."))
            if covers and (best is None or len(stem) > best[0]):
                best = (len(stem), rank)
    return None if best is None else best[1]


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def test_no_import_circles_between_modules_or_folders():
    graph = _graph()
    problems = [f"modules import each other in a circle: {' <-> '.join(c)}"
                for c in _cycles({m: set(edges) for m, edges in graph.items()})]
    folders: dict[str, set[str]] = {}
    for module, edges in graph.items():
        folders.setdefault(_folder(module), set()).update(_folder(t) for t in edges if _folder(t) != _folder(module))
    problems += [f"folders import each other in a circle: {' <-> '.join(c)}" for c in _cycles(folders)]
    for problem in problems:
        print(problem)
    assert not problems, "\n".join(problems)


def test_the_server_never_imports_the_offline_tools():
    problems = [f"{_where(module, line)}: {module} imports {name}"
                for module, path in MODULES.items() for name, line in _imported(module, path)
                if name.split(".")[0] in OFFLINE]
    for problem in problems:
        print(problem)
    assert not problems, "\n".join(problems)


# What each top-level package may import of the others (besides itself): the tools below the server's data
# flow (scraper → trainer) and the web UI, which speaks to the server only over its HTTP/websocket API.
PACKAGES = {"server": {"common"}, "scraper": {"common"}, "trainer": {"scraper", "common"}, "web": set(),
            "common": set()}


def test_each_package_imports_only_the_packages_it_builds_on():
    problems = []
    for package, allowed in PACKAGES.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for name, line in _imported(module, path):
                top = name.split(".")[0]
                if top in PACKAGES and top != package and top not in allowed:
                    problems.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {name}")
    for problem in problems:
        print(problem)
    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer_and_imports_only_downwards():
    problems = [f"{MODULES[m].relative_to(ROOT)}: {m} has no layer; add it to LAYERS in {Path(__file__).name}"
                for m in MODULES if m not in ("server", "common") and _layer(m) is None]
    for module, edges in _graph().items():
        here = _layer(module)
        for target, line in edges.items():
            there = _layer(target)
            if here is not None and there is not None and there > here:
                problems.append(f"{_where(module, line)}: {module} ({LAYERS[here][0]}) imports {target} "
                                f"({LAYERS[there][0]}), a layer above it")
    for problem in problems:
        print(problem)
    assert not problems, "\n".join(problems)
