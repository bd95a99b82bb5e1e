"""Settings over seeds: experiments that differ only in their seed params grouped into one setting,
each student's scores over the seeds, and the preference-minus-control margin with an interval over
prompts and seeds (from each run's per-prompt verdicts, read from DVC's cache at the run's revision).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecd import layout
from ecd.report_tables import SET_TITLES, STATISTICS_KEYS, Table, baseline_row, changed_params, ci_text, is_seed_key

if TYPE_CHECKING:
    from ecd.uncertainty import Verdicts

VerdictReader = Callable[[str, str, str], "Verdicts"]


def read_at(rev: str, path: str) -> bytes:
    """A file of the pipeline's outputs as it was at ``rev`` (an experiment or commit, from DVC's
    cache), or in the workspace for ``"workspace"``.

    The file's hash comes from ``rev``'s ``dvc.lock`` (and the manifest of the directory output that
    holds it), and its bytes from the local cache: about a millisecond, where DVC's filesystem
    takes 0.3 s a file building its index (a report over a study reads dozens). Anything else (an
    output only on a remote, a lock without the path) goes through ``dvc.api.DVCFileSystem``."""
    if rev == "workspace":
        return Path(path).read_bytes()
    local = _cache_path(rev, path)
    if local is not None and local.exists():
        return local.read_bytes()
    from dvc.api import DVCFileSystem

    fs = _FILESYSTEMS.get(rev) or _FILESYSTEMS.setdefault(rev, DVCFileSystem(".", rev=rev))
    return bytes(fs.read_bytes(path))


def _cache_path(rev: str, path: str) -> Path | None:
    """Where the local DVC cache holds ``path`` as of ``rev``, from the lock's hashes; None when the
    lock does not name it; FileNotFoundError when the directory output that would hold it does not."""
    import subprocess

    import yaml

    if rev not in _LOCKS:
        proc = subprocess.run(["git", "show", f"{rev}:dvc.lock"], capture_output=True, text=True)
        _LOCKS[rev] = yaml.safe_load(proc.stdout) if proc.returncode == 0 else None
    lock = _LOCKS[rev]
    if not lock:
        return None
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            out_path, md5 = str(out.get("path", "")), str(out.get("md5", ""))
            if out_path == path and not md5.endswith(".dir"):
                return _oid_path(md5)
            if path.startswith(out_path.rstrip("/") + "/") and md5.endswith(".dir"):
                manifest = _oid_path(md5)
                if not manifest.exists():
                    return None
                rel = path[len(out_path.rstrip("/")) + 1:]
                entries = _MANIFESTS.get(md5) or _MANIFESTS.setdefault(md5, {
                    e["relpath"]: e["md5"] for e in json.loads(manifest.read_text())})
                if rel not in entries:
                    raise FileNotFoundError(f"{path} is not in {out_path} at {rev}")
                return _oid_path(entries[rel])
    return None


def _oid_path(md5: str) -> Path:
    return _cache_dir() / md5[:2] / md5[2:]


@functools.lru_cache(maxsize=1)
def _cache_dir() -> Path:
    """The local DVC cache's folder of files by hash (``.dvc/cache/files/md5`` unless configured)."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        return Path(repo.cache.local.path)


def read_records_at(rev: str, model: str, set_name: str) -> list[dict[str, Any]]:
    """The evaluation records ``data/eval/<model>/<set>.jsonl`` as they were at ``rev``."""

    def read(name: str) -> str:
        return read_at(rev, f"{layout.EVAL.as_posix()}/{name}/{set_name}.jsonl").decode("utf-8")

    try:
        text = read(model)
    except FileNotFoundError:
        if model not in FORMER_NAMES:
            raise
        text = read(FORMER_NAMES[model])  # a run from before the student's rename
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_verdicts(rev: str, model: str, set_name: str) -> "Verdicts":
    """``data/eval/<model>/<set>.jsonl`` as it was at ``rev`` (from DVC's cache), as verdicts."""
    from ecd.uncertainty import Verdicts

    return Verdicts.from_results(read_records_at(rev, model, set_name))


#: students' earlier names, read where a run made before a rename is compared
FORMER_NAMES = {"preference": "dpo"}


_FILESYSTEMS: dict[str, Any] = {}
#: each rev's parsed dvc.lock, and each directory output's manifest: relpath → md5
_LOCKS: dict[str, Any] = {}
_MANIFESTS: dict[str, dict[str, str]] = {}


def seed_groups(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The finished runs (the commit's own and its experiments) grouped by their params less the
    seed params: each group is one setting run under several seeds. An experiment with exactly the
    params of an earlier run (the baseline's own seed, queued again) is the same run and counted
    once. Groups keep the order of their first run; the baseline's group comes first."""
    base = baseline_row(rows)
    runs = ([base] if base else []) + sorted((r for r in rows if r.get("state") == "success"), key=lambda r: str(r["name"]))
    groups: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for r in runs:
        params = r.get("params") or {}
        full = json.dumps({k: v for k, v in params.items() if k not in STATISTICS_KEYS}, sort_keys=True, default=str)
        if full in seen:
            continue
        seen.add(full)
        key = json.dumps({k: v for k, v in params.items() if not is_seed_key(k)}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    return list(groups.values())


@dataclass
class SeedGroup:
    """One setting over its seeds on one evaluation set: the runs, each student's scores, and the
    preference-minus-control margin with its interval (None where it could not be computed: ``note``)."""

    label: str
    runs: list[str]
    scores: dict[str, list[float]]
    margin: dict[str, float] | None
    note: str = ""


def seed_summary(rows: list[dict[str, Any]], read: VerdictReader = read_verdicts, resamples: int = 25_000,
                 seed: int = 0, set_name: str = "ifeval", metric_name: str = "prompt_strict") -> list[SeedGroup]:
    """Each setting over its seeds (:func:`seed_groups`) on ``set_name``: the students' prompt-level
    metric (strict, or loose for IFBench's headline) per run, and the preference-minus-control margin
    with a 95 % interval over prompts and seeds (:func:`ecd.uncertainty.seed_interval`, from each
    run's per-prompt verdicts). Runs scored on different prompts are not combined. Empty where no
    run has the metric."""
    import statistics

    from dvc.exceptions import DvcException

    from ecd.uncertainty import seed_interval

    groups = seed_groups(rows)
    base = baseline_row(rows)
    metric = f"{set_name}.{metric_name}"
    mode = metric_name.split("_")[1]
    if not any(f"preference.{metric}" in r for g in groups for r in g):
        return []
    out = []
    for group in groups:
        first = group[0]
        label = "baseline" if first is base else (changed_params(first.get("params") or {}, (base or {}).get("params") or {}, 4,
                                                           seeds=False) or "the baseline's params")
        scores = {m: [r[f"{m}.{metric}"] for r in group if isinstance(r.get(f"{m}.{metric}"), (int, float))]
                  for m in layout.STUDENTS}
        item = SeedGroup(label, [str(r["name"]) for r in group], scores, None)
        if len({r.get(f"preference.{set_name}.prompt_set") for r in group}) > 1:
            item.note = "runs scored on different prompts: not combined"
        else:
            try:
                diffs = []
                for r in group:
                    rev = str(r.get("rev") or r.get("name"))
                    pref, ctl = read(rev, "preference", set_name), read(rev, "control", set_name)
                    diffs.append(pref.follow_all[mode].astype(float) - ctl.follow_all[mode].astype(float))
                item.margin = seed_interval(diffs, resamples, seed)
                item.note = "" if item.margin["runs"] > 1 else "1 run: prompts only"
            except (OSError, ValueError, KeyError, DvcException) as exc:  # answers not in the local cache
                margins = [d - c for d, c in zip(scores["preference"], scores["control"])]
                item.note = (f"{statistics.mean(margins):+.3f} (no interval: per-prompt answers not readable, "
                             f"{type(exc).__name__})") if margins else ""
        out.append(item)
    return out


def seed_table(groups: list[SeedGroup], set_name: str, metric_name: str) -> Table | None:
    """One row per setting: the runs, each student's mean ± sd, and the margin with its interval."""
    import statistics

    if not groups:
        return None
    table = Table(f"Settings over seeds: {SET_TITLES.get(set_name, set_name)}, {metric_name}",
                  ["setting", "runs", *(f"{m} (mean ± sd)" for m in layout.STUDENTS), "preference − control, 95 % over prompts and seeds"])
    for g in groups:
        cells = []
        for m in layout.STUDENTS:
            vals = g.scores[m]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.3f} ± {sd:.3f}" if vals else "")
        if g.margin:
            margin = ci_text(g.margin["delta"], g.margin["lo"], g.margin["hi"], signed=True) + (f" ({g.note})" if g.note else "")
        else:
            margin = g.note
        table.rows.append([f"{g.label} (seeds: {', '.join(g.runs)})", str(len(g.runs)), *cells, margin])
    return table
