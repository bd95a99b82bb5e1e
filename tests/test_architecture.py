"""The house's shape, checked from the code: the import graph has no cycle, no module imports from a
part of the pipeline above its own (docs/architecture.md draws the parts), and no module outgrows
what one reader holds (about 400 lines; the declarative constraint tables and the params schema
excepted)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the parts of ecd from the bottom up; a module may import its own part and the parts below it
PARTS: dict[str, set[str]] = {
    "foundation": {"errors", "schema", "layout", "records", "record_index", "progress", "cache", "stage", "contrast", "workers"},
    "domain": {"constraints", "params"},
    "model access": {"backends", "registry", "resources"},
    "data": {"seeds", "rounds", "sampling", "evolve", "evolve_stream", "screening", "judge", "verification", "split", "stubs", "pairs", "matching", "pairing", "pair_stream", "hub"},
    "training": {"student", "training", "tracking", "trl_patch", "rewards", "grpo"},
    "evaluation": {"evaluation", "uncertainty"},
    "reporting": {"report_tables", "seed_runs", "report", "charts", "grid", "profiles", "study", "study_report", "diagnosis", "viewer"},
    "entry": {"cli", "cli_experiments", "api", "__init__"},  # __init__: the API's names, loaded on use
}
#: declarative tables (one class per constraint type, the params schema): long, but read one entry at a time
LONG_ALLOWED = {"ecd/constraints/ifeval.py", "ecd/constraints/ifbench.py", "ecd/constraints/extra.py", "ecd/params.py"}
MAX_LINES = 410


def _unit(module: str) -> str | None:
    """``ecd.backends.base`` → ``backends.base``; ``ecd.constraints.ifeval`` → ``constraints``."""
    parts = module.split(".")
    if parts[0] != "ecd" or len(parts) == 1:
        return None
    if parts[1] == "backends":
        return ".".join(parts[1:3])
    return parts[1]


def _file_unit(path: Path) -> str:
    rel = path.relative_to(ROOT / "ecd").with_suffix("")
    if rel.parts[0] == "backends":
        return ".".join(rel.parts[:2]) if rel.parts[-1] != "__init__" else "backends"
    return rel.parts[0]


def graph() -> dict[str, set[str]]:
    """Each module's ecd imports (at the top of a file or inside a function); a package's modules
    are one node, except model access, whose modules are nodes of their own."""
    edges: dict[str, set[str]] = {}
    for f in sorted((ROOT / "ecd").rglob("*.py")):
        me = _file_unit(f)
        out = edges.setdefault(me, set())
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ecd":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists()
                    names.append(sub if is_module else node.module)
            out |= {u for n in names if (u := _unit(n)) and u != me}
    return edges


def _part(unit: str) -> int:
    top = unit.split(".")[0]
    return next(i for i, members in enumerate(PARTS.values()) if top in members)


def test_every_module_belongs_to_a_part() -> None:
    known = set().union(*PARTS.values())
    stray = sorted({u.split(".")[0] for u in graph()} - known)
    assert not stray, f"modules in no part of tests/test_architecture.py's PARTS (and docs/architecture.md): {stray}"


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path[path.index(nxt):] + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])


def test_no_module_imports_from_a_part_above_its_own() -> None:
    upward = sorted(f"{a} -> {b}" for a, deps in graph().items() for b in deps if _part(b) > _part(a))
    assert not upward, f"imports that point up the pipeline: {upward}"


def test_model_access_modules_import_siblings_not_the_package_front() -> None:
    # ecd/backends/__init__.py gathers the package for the pipeline; a module inside importing it
    # back would be a cycle through the front door
    inside = {u: deps for u, deps in graph().items() if u.startswith("backends.")}
    back = sorted(u for u, deps in inside.items() if "backends" in deps)
    assert not back, f"modules of ecd/backends importing the package itself: {back}"


def test_no_module_outgrows_one_reader() -> None:
    long = {f.relative_to(ROOT).as_posix(): n for f in (ROOT / "ecd").rglob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= LONG_ALLOWED, f"modules over {MAX_LINES} lines: {long}"
