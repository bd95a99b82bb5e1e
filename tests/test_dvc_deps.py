"""``dvc.yaml`` lists, as each stage's dependencies, every module of ecd that its script imports and
that can change its outputs — found by following the imports in the code, so that a new import
cannot bring back stale results from DVC's stage cache (``dvc repro`` trusts these lists)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: modules that change no output: error types, paths (dvc.yaml states them itself), progress bars,
#: the stage wrapper (timings, one-line errors), the call cache (a hit gives the bytes a miss would), the CLI
NO_OUTPUT_EFFECT = {"ecd/__init__.py", "ecd/errors.py", "ecd/layout.py", "ecd/progress.py", "ecd/stage.py",
                    "ecd/cache.py", "ecd/cli.py"}


def _module_path(name: str) -> Path:
    """``ecd.x.y`` → its file, or the package folder for a package."""
    base = ROOT / Path(*name.split("."))
    return base if base.is_dir() else base.with_suffix(".py")


def _imports(path: Path) -> set[str]:
    """The ecd modules a file (or every file of a package) imports anywhere, at top level or in a function."""
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    found: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "ecd"}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ecd":
                for a in node.names:  # `from ecd import layout` imports a module; `from ecd.x import f` the module x
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if _module_path(sub).exists() else node.module)
    return {m for m in found if m != "ecd"}


def code_closure(script: Path) -> set[str]:
    """Every ecd file or package (relative path) the script reaches through imports."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for name in _imports(todo.pop()):
            path = _module_path(name)
            pkg = next((p for p in path.parents if (p / "__init__.py").exists() and p.parent == ROOT / "ecd"), None)
            path = pkg or path  # a module inside ecd/constraints counts as the package
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_depends_on_the_code_that_makes_its_outputs() -> None:
    missing = {}
    for name, spec in _stages().items():
        body = spec.get("do", spec)
        script = ROOT / body["cmd"].split()[1]
        deps = [d.rstrip("/") for d in body["deps"]]
        covered = {d for d in deps if d.startswith(("ecd", "stages"))}
        assert script.relative_to(ROOT).as_posix() in covered, f"{name}: its own script {script.name} is not a dep"
        needed = code_closure(script) - NO_OUTPUT_EFFECT
        lacking = sorted(m for m in needed if not any(m == d or m.startswith(d + "/") for d in covered))
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml deps miss imported code: {missing}"


def test_the_import_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    # verification imports the judge inside functions only; the walk must still reach it
    assert "ecd/judge.py" in code_closure(ROOT / "stages" / "verify.py")
    assert "ecd/constraints" in code_closure(ROOT / "stages" / "sample.py")  # via the programmatic teacher
