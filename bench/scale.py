"""The data half at scale: ``dvc repro pair`` on seed sets of growing size, stage by stage.

    python bench/scale.py [--seeds 1750 17500 52500] [--speedup-at 1750 ...] [--set KEY=VALUE ...] [--keep DIR]

Each size is a fresh copy of the project (its tracked files, a new git repo, its own DVC cache and
call cache) whose seed file is the 175 Self-Instruct seeds replicated with distinct suffixes
(``… (variant 7)``, on the instruction and on its reference answer, so that, as with real seeds,
distinct instructions get distinct answers), cut to the size; every other param is the default (the programmatic teacher, 8
chains, 3 rounds), with ``--set`` overrides on top. The stages ``dvc repro pair`` runs are run one
at a time (``dvc repro --single-item``), in DVC's order, so that each has its own figures:

- wall seconds, DVC's hashing and lock writing included;
- peak resident memory: of the largest process of the stage's run (``getrusage(RUSAGE_CHILDREN)`` of
  a helper process that ran it: DVC itself, the stage's script or one of its workers), and of all its
  processes at once (sampled five times a second), which is what the machine must hold;

then, per size, the bytes of ``data/rounds`` (and per seed), the pairs made, the wall time against
the linear extrapolation of the smallest size measured in the same run, and the stages that spread
over worker processes (``evolve``, ``verify``, ``pair``: ``ecd.workers``) run again on the same
inputs with one process and with ``--workers``, side by side, their outputs compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "data/self-instruct/seed_tasks.jsonl"

#: runs one command; prints the largest resident size (kB) among the processes it waited for, and
#: the peak of the resident sizes of all its processes at once (DVC, the stage's script, its worker
#: processes), sampled five times a second with psutil (a DVC dependency)
_MEASURE = ("import resource, subprocess, sys, time\n"
            "import psutil\n"
            "proc, peak = psutil.Popen(sys.argv[1:]), 0\n"
            "while proc.poll() is None:\n"
            "    total = 0\n"
            "    for p in [proc, *proc.children(recursive=True)]:\n"
            "        try:\n"
            "            total += p.memory_info().rss\n"
            "        except psutil.Error:\n"
            "            pass\n"
            "    peak = max(peak, total)\n"
            "    time.sleep(0.2)\n"
            "print('ECD_PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "print('ECD_TREE_KB', peak // 1024, file=sys.stderr)\n"
            "sys.exit(proc.returncode)\n")


def project(dest: Path, seeds: int, sets: list[str]) -> dict[str, str]:
    """A copy of the project at ``dest`` with ``seeds`` replicated seed tasks; returns its environment."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if f.startswith(("dvc.lock", "metrics/", "plots/")) or not (ROOT / f).exists():
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    base = [json.loads(line) for line in SEEDS.read_text().splitlines() if line.strip()]
    with (dest / "data/self-instruct/seed_tasks.jsonl").open("w") as fh:
        for i in range(seeds):
            row, copy = dict(base[i % len(base)]), i // len(base)
            if copy:
                row["id"] = f"{row['id']}_v{copy}"
                row["instruction"] = f"{row['instruction']} (variant {copy})"
                row["instances"] = [{**row["instances"][0], "output": f"{row['instances'][0]['output']} (variant {copy})"}]
            fh.write(json.dumps(row) + "\n")
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for item in sets:
        key, value = item.split("=", 1)
        node = params
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = yaml.safe_load(value)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DVC_NO_ANALYTICS": "1",
           "PYTHONHASHSEED": "0", "ECD_CACHE_DIR": str(dest / ".ecd/cache"), "ECD_PROGRESS_INTERVAL": "600",
           # the copy's own ecd, not the one an editable install points at
           "PYTHONPATH": os.pathsep.join(filter(None, [str(dest), os.environ.get("PYTHONPATH", "")])),
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "scale bench"]):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    return env


def stages(dest: Path) -> list[str]:
    """The stages ``dvc repro pair`` runs, in an order that respects dvc.yaml's dependencies."""
    rounds = list(yaml.safe_load((dest / "params.yaml").read_text())["rounds"])
    return ["model", "seeds", "sample_r0", "verify_r0", *(f"{s}@{r}" for r in rounds for s in ("evolve", "sample", "verify")),
            "split", "student", "pair"]


def run_stage(dest: Path, env: dict[str, str], stage: str) -> tuple[float, float, float]:
    """(wall seconds, peak resident MB of its largest process, peak MB of all its processes at once)
    of ``dvc repro --single-item stage``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, "dvc", "repro", "--single-item", stage], cwd=dest, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{stage} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    peak = int(re.search(r"ECD_PEAK_KB (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    tree = int(re.search(r"ECD_TREE_KB (\d+)", proc.stderr).group(1))  # type: ignore[union-attr]
    return wall, peak / 1024, tree / 1024


#: the round stages that spread their CPU work over worker processes (ecd.workers), and what each
#: writes (``pair`` does too: random's checks)
PARALLEL = {"verify": ("verdicts", "state", "steps"), "evolve": ("instructions", "chains")}


def speedup(dest: Path, env: dict[str, str], workers: int) -> list[tuple[str, float, float, bool]]:
    """(stage, seconds with one process, seconds with ``workers``, the same bytes) for every parallel
    stage of the run, each stage's script run directly (no DVC) on the run's own inputs, one process
    then ``workers``, side by side."""
    rounds = list(yaml.safe_load((dest / "params.yaml").read_text())["rounds"])
    runs: list[tuple[str, list[str], list[Path]]] = []
    for rnd in ["r0", *rounds]:
        for stage in ("evolve", "verify") if rnd != "r0" else ("verify",):
            files = [dest / "data/rounds" / rnd / f"{k}.jsonl" for k in PARALLEL[stage]]
            runs.append((f"{stage} {rnd}", [f"stages/{stage}.py", rnd], [f for f in files if f.exists()]))
    runs.append(("pair", ["stages/pair.py"], [dest / "data/pairs/train.parquet", dest / "data/pairs/test.parquet",
                                               dest / "data/rows.parquet"]))
    out = []
    for label, cmd, files in runs:
        walls, written = [], []
        for n in (1, workers):
            start = time.perf_counter()
            subprocess.run([sys.executable, *cmd], cwd=dest, env={**env, "ECD_WORKERS": str(n)}, check=True,
                           capture_output=True)
            walls.append(time.perf_counter() - start)
            written.append([f.read_bytes() for f in files])
        out.append((label, walls[0], walls[1], written[0] == written[1]))
    return out


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1750, 17500, 52500])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="a param over params.yaml, KEY=VALUE")
    ap.add_argument("--keep", type=Path, help="keep the projects under this folder (default: a temporary one, removed)")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="worker processes for the parallel stages' side-by-side run (1: skip it)")
    ap.add_argument("--speedup-at", type=int, nargs="*",
                    help="the sizes whose parallel stages run again side by side (default: every size)")
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}; {os.cpu_count()} cores; sizes {args.seeds}; sets {args.sets or 'none'}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="ecd-scale-"))
    results = []
    try:
        for n in args.seeds:
            dest = root / f"seeds-{n}"
            if dest.exists():
                shutil.rmtree(dest)
            env = project(dest, n, args.sets)
            rows, total = [], 0.0
            for stage in stages(dest):
                wall, peak, tree = run_stage(dest, env, stage)
                rows.append((stage, wall, peak, tree))
                total += wall
                print(f"  seeds {n}: {stage:<12} {wall:8.1f} s  peak {peak:8.0f} MB (largest process), "
                      f"{tree:8.0f} MB (all its processes)", flush=True)
            pair = json.loads((dest / "metrics/pair.json").read_text())
            rounds = du(dest / "data/rounds")
            side_by_side = args.workers > 1 and (args.speedup_at is None or n in args.speedup_at)
            parallel = speedup(dest, env, args.workers) if side_by_side else []
            for stage, one, many, same in parallel:
                print(f"  seeds {n}: {stage:<12} 1 process {one:7.1f} s, {args.workers} workers {many:7.1f} s: "
                      f"{one / many:.2f}×, {'the same bytes' if same else 'DIFFERENT BYTES'}", flush=True)
            results.append({"seeds": n, "wall": total, "peak": max(r[3] for r in rows),
                            "worst": max(rows, key=lambda r: r[3])[0], "rounds_bytes": rounds,
                            "pairs": pair["train_pairs"] + pair["test_pairs"],
                            "one": sum(x[1] for x in parallel), "many": sum(x[2] for x in parallel),
                            "same": all(x[3] for x in parallel)})
            if not args.keep:
                shutil.rmtree(dest)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    first = results[0]
    print(f"| seeds | pairs | wall s | linear from the first | peak MB, all processes (stage) | data/rounds MB | KB a seed | "
          f"parallel stages: 1 process / {args.workers} workers |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        linear = first["wall"] * r["seeds"] / first["seeds"]
        ratio = (f"{r['one']:.0f} s / {r['many']:.0f} s = {r['one'] / r['many']:.2f}×"
                 f"{'' if r['same'] else ' (DIFFERENT BYTES)'}") if r["many"] else "not run"
        print(f"| {r['seeds']:,} | {r['pairs']:,} | {r['wall']:.0f} | {r['wall'] / linear:.2f}× | "
              f"{r['peak']:.0f} ({r['worst']}) | {r['rounds_bytes'] / 2**20:.0f} | {r['rounds_bytes'] / r['seeds'] / 1024:.0f} | "
              f"{ratio} |")


if __name__ == "__main__":
    main()
