"""The package's layout holds: layers import only downwards (docs/architecture.md), no import
cycles (lazy imports counted), the shared search and config code names no method, and files stay
small unless their docstring says why."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections import defaultdict
from pathlib import Path

from tests.conftest import ROOT

# Layers, bottom first: a module may import from its own layer and the ones below it only.
LAYERS = [
    {
        "nas",
        "nas.errors",
        "nas.atomic",
        "nas.plotting",
        "nas.config",
        "nas.ghost_bn",
        "nas.routing",
        "nas.ops",
        "nas.distributed",
        "nas.checkpointing",
        "nas.loggers",
    },
    {"nas.spaces", "nas.samplers", "nas.data"},
    {"nas.modules"},
    {"nas.results", "nas.latency", "nas.proxies"},
    {"nas.search"},
    {"nas.methods"},
    {"nas.report"},
    {"nas.callbacks"},
    {"nas.cli", "nas.collect", "nas.quality", "nas.export"},  # the entry points' own modules
]
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}
MAX_LINES = 300
REASON = "Longer than 300 lines"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "nas").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> set[str]:
    """The nas modules `name` imports anywhere in its file (lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for target in targets:
            resolved = _resolve(target) if target.startswith("nas") else None
            if resolved and resolved != name:
                found.add(resolved)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_package_has_a_layer():
    assert {_layer_of(m) for m in MODULES} <= set(LEVEL), set(map(_layer_of, MODULES)) - set(LEVEL)


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{a} -> {b}"
        for a, targets in GRAPH.items()
        for b in targets
        if LEVEL[_layer_of(b)] > LEVEL[_layer_of(a)]
    ]
    assert not upward


def test_no_import_cycles_between_modules_or_packages():
    assert _cycles(GRAPH) == []
    packages = defaultdict(set)
    for a, targets in GRAPH.items():
        packages[_layer_of(a)] |= {_layer_of(b) for b in targets} - {_layer_of(a)}
    assert _cycles(packages) == []


def _code_without_comments(path: Path) -> str:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return " ".join(t.string for t in tokens if t.type != tokenize.COMMENT)


def test_shared_search_and_config_code_names_no_method():
    files = [*(ROOT / "nas" / "search").rglob("*.py")]
    files += [ROOT / "nas" / "config.py", ROOT / "search.py", ROOT / "train.py"]
    named = re.compile(r"ENAS|FewShot|fewshot|load_parent")
    found = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in files
        for m in named.findall(_code_without_comments(p))
    ]
    assert not found


def test_long_files_say_why():
    long = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and REASON not in (ast.get_docstring(ast.parse(path.read_text())) or "")
    ]
    assert not long
