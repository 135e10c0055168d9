"""The import graph follows DESIGN.md: one direction of dependency, no cycles (imports inside
functions count), and the web process free of the worker runtime and the store backends.

Read statically from the source, so a lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import filodb

ROOT = Path(filodb.__file__).parent

# package -> the packages (and top-level modules) it may import; "*" for anything
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "auth": {"errors"},
    "redisproc": {"errors"},
    "procmem": set(),
    "listen": set(),
    "numbacache": set(),
    "numbalink": set(),
    "exposition": {"errors"},
    "model": {"errors"},
    "encoding": {"errors", "model"},
    "memstore": {"errors", "model", "encoding"},
    "store": {"errors", "model"},
    "ingest": {"errors", "model"},
    "shards": {"errors", "model"},
    "query": {"errors", "model"},
    "prom": {"errors", "model", "encoding"},
    "downsample": {"errors", "model", "encoding", "store"},
    "tasks": {"errors", "model", "query", "shards", "config"},
    "node": {
        "errors",
        "model",
        "encoding",
        "memstore",
        "store",
        "ingest",
        "shards",
        "query",
        "tasks",
        "config",
        "exposition",
        "downsample",
        "procmem",
    },  # fmt: skip
    "gateway": {
        "errors",
        "model",
        "ingest",
        "shards",
        "prom",
        "config",
        "auth",
        "exposition",
        "redisproc",
    },  # fmt: skip
    "rules": {
        "errors",
        "model",
        "query",
        "shards",
        "tasks",
        "ingest",
        "gateway",
        "config",
        "exposition",
    },  # fmt: skip
    "web": {
        "rules",
        "errors",
        "model",
        "ingest",
        "shards",
        "query",
        "prom",
        "tasks",
        "gateway",
        "config",
        "auth",
        "exposition",
        "listen",
        "filodb",
    },  # fmt: skip
    "tools": {"errors", "model", "encoding", "query", "prom", "gateway"},
    "spark": {
        "errors",
        "config",
        "model",
        "encoding",
        "memstore",
        "store",
        "query",
        "prom",
        "tools",
    },  # fmt: skip
    "supervisor": {"errors", "config", "listen", "redisproc", "shards", "zygote"},
    "zygote": {"redisproc"},
    "zygote_process": {
        "zygote",
        "redisproc",
        "procmem",
        "numbalink",
        "node",
        "web",
        "gateway",
        "prom",
    },
    "devservices": {"errors"},
    "cli": {"*"},
    "uptree": {"errors", "redisproc"},
    "warmup": {"errors", "model", "prom", "redisproc", "tools", "uptree"},
    "__main__": {"cli", "supervisor"},  # filodb up exec's itself into the supervisor
    "testing": {"*"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ("filodb", *p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {m: _imports(m) for m in MODULES}


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "filodb"


def _closure(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for d in GRAPH[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_every_package_imports_only_what_the_design_allows() -> None:
    wrong = []
    for mod, deps in sorted(GRAPH.items()):
        pkg = _package(mod)
        if pkg == "filodb":
            continue
        allowed = ALLOWED[pkg]
        for d in sorted(deps):
            dp = _package(d)
            if dp != pkg and "*" not in allowed and dp not in allowed:
                wrong.append(f"{mod} -> {d}")
    assert not wrong, "imports against DESIGN.md's direction:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_the_web_process_imports_no_worker_runtime_and_no_store_backend() -> None:
    reach = _closure("filodb.web") | {"filodb.web"}
    banned = [m for m in sorted(reach)
              if _package(m) in ("node", "memstore", "store", "tools") or m.startswith("filodb.cli")]  # fmt: skip
    assert not banned, f"the web process reaches: {banned}"


def test_the_graph_is_read_from_the_real_tree() -> None:
    # guards the tests above against a walker that finds nothing (and so passes vacuously)
    assert "filodb.node.runtime" in MODULES and "filodb.web" in MODULES
    assert "filodb.memstore.shard" in _closure("filodb.node.runtime")
    assert "filodb.tasks.fanout" in _closure("filodb.web")
