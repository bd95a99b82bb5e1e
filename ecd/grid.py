"""The experiment grid: pair strategy × preference loss × seed, as DVC experiments.

``queue`` puts one ``dvc exp run --queue`` per cell and seed; DVC's run-cache shares what cells have
in common (the data half, the student, SFT per seed, the control per strategy and seed), so a cell
costs its preference training and evaluation. ``summary`` reads ``dvc exp show --json`` and gives
mean and spread per cell of the held-out metric, with the SFT-only control beside it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from collections import defaultdict
from typing import Any

from ecd.errors import EcdError
from ecd.params import EXTRA_STRATEGIES, PAIR_STRATEGIES as STRATEGIES, one_of

#: the grid's losses: name → (TRL loss types, weights)
LOSSES: dict[str, tuple[list[str], list[float]]] = {
    "dpo": (["sigmoid"], [1.0]),
    "rpo": (["sigmoid", "sft"], [1.0, 1.0]),
    "slic": (["hinge"], [1.0]),
    "ipo": (["ipo"], [1.0]),
}


def _list(values: list[Any]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def experiments(strategies: list[str], losses: list[str], seeds: list[int]) -> list[tuple[str, list[str]]]:
    """(name, ``-S`` overrides) per cell and seed. Every cell pairs the same rows (``pair.match``:
    the grid's strategies less the extra arms of ``EXTRA_STRATEGIES``, which pair those rows too,
    so that adding one changes no other cell), so that a seed's strategies differ in their
    negatives alone and share one SFT-only control; a seed sets the student's, the pairs' and training's seeds (not the
    held-out split's, which stays put so that every run is scored on the same prompts)."""
    out = []
    matched = [s for s in strategies if s not in EXTRA_STRATEGIES]  # an extra arm reads the others' rows
    for strategy in strategies:
        try:
            one_of(strategy, STRATEGIES, "strategy")
            for loss in losses:
                one_of(loss, tuple(LOSSES), "grid loss")
        except ValueError as exc:
            raise EcdError(str(exc)) from None
        for loss in losses:
            types, weights = LOSSES[loss]
            for seed in seeds:
                out.append((f"{strategy}-{loss}-s{seed}", [
                    f"pair.strategy={_list([strategy])}", f"pair.match={_list(matched)}",
                    f"train.dpo.loss_type={_list(types)}", f"train.dpo.loss_weights={_list(weights)}",
                    f"train.seed={seed}", f"student.seed={seed}", f"pair.seed={seed}",
                ]))
    return out


def queue(strategies: list[str], losses: list[str], seeds: list[int], extra: list[str]) -> list[str]:
    """Queue every experiment with ``dvc exp run --queue``; returns their names."""
    names = []
    for name, sets in experiments(strategies, losses, seeds):
        cmd = ["dvc", "exp", "run", "--queue", "-n", name]
        for s in [*sets, *extra]:
            cmd += ["-S", s]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EcdError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        names.append(name)
    return names


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def exp_rows(show: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten ``dvc exp show --json``: one dict per commit and experiment with its name, state
    (``None`` for a commit), params and metrics as dotted keys; also its params alone under
    ``"params"`` and, for an experiment, those of the commit it derives from under ``"baseline"``."""
    rows = []

    def visit(entry: dict[str, Any], state: str | None = None, baseline: dict[str, Any] | None = None) -> None:
        data = entry.get("data") or {}
        name = entry.get("name") or data.get("name") or entry.get("rev") or data.get("rev")
        flat: dict[str, Any] = {"name": name, "state": state, "rev": entry.get("rev") or data.get("rev")}
        params: dict[str, Any] = {}
        for _file, content in (data.get("params") or {}).items():
            params.update(_flatten((content or {}).get("data") or {}))
        flat.update(params)
        for _file, content in (data.get("metrics") or {}).items():
            flat.update(_flatten((content or {}).get("data") or {}))
        for key in [k for k in flat if k.startswith("dpo.")]:  # runs from before the student was renamed
            flat.setdefault("preference." + key[len("dpo."):], flat[key])
        flat["params"], flat["baseline"] = params, baseline
        rows.append(flat)
        for child in entry.get("experiments") or []:
            state = ((child.get("executor") or {}).get("state")) or "success"
            for run in child.get("revs") or [child]:
                visit(run, state, params)

    for entry in show:
        visit(entry)
    return rows


def summarise(rows: list[dict[str, Any]], metric: str = "heldout.prompt_strict") -> list[dict[str, Any]]:
    """Mean and sample standard deviation per (strategy, loss) over seeds, for the preference-trained
    student and the control of the same runs; cells are the experiments named ``strategy-loss-sN``
    that have metrics (queued and failed ones are left out)."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        parts = str(r.get("name") or "").rsplit("-", 2)
        if r.get("state") != "success":  # a running experiment shows its baseline's metrics
            continue
        if len(parts) == 3 and parts[0] in STRATEGIES and parts[1] in LOSSES and parts[2].startswith("s"):
            cells[(parts[0], parts[1])].append(r)
    out = []
    for (strategy, loss), runs in sorted(cells.items(), key=lambda kv: (STRATEGIES.index(kv[0][0]), list(LOSSES).index(kv[0][1]))):
        pref = [r[f"preference.{metric}"] for r in runs if f"preference.{metric}" in r]
        ctl = [r[f"control.{metric}"] for r in runs if f"control.{metric}" in r]
        if not pref:  # queued or failed: no metrics yet
            continue
        wins = sum(r[f"preference.{metric}"] > r[f"control.{metric}"] for r in runs
                   if f"preference.{metric}" in r and f"control.{metric}" in r)
        out.append({
            "strategy": strategy, "loss": loss, "seeds": len(pref),
            "mean": statistics.mean(pref) if pref else None, "sd": statistics.stdev(pref) if len(pref) > 1 else 0.0,
            "control_mean": statistics.mean(ctl) if ctl else None,
            "control_sd": statistics.stdev(ctl) if len(ctl) > 1 else 0.0,
            "beats_control": f"{wins}/{len(pref)}",
        })
    return out


def runs_markdown(rows: list[dict[str, Any]], metric: str) -> str:
    """One line per finished grid experiment: the preference-trained student, the control, SFT."""
    lines = [f"| experiment | {metric}: preference | control | SFT | preference − control |", "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: str(r["name"])):
        if r.get("state") == "success" and f"preference.{metric}" in r and str(r["name"]).count("-") == 2:
            d, c = r[f"preference.{metric}"], r[f"control.{metric}"]
            lines.append(f"| {r['name']} | {d:.3f} | {c:.3f} | {r[f'sft.{metric}']:.3f} | {d - c:+.3f} |")
    return "\n".join(lines)


def markdown(summary: list[dict[str, Any]], metric: str) -> str:
    lines = [f"| strategy | loss | seeds | {metric} (mean ± sd) | SFT-only control | beats control |",
             "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['strategy']} | {s['loss']} | {s['seeds']} | {s['mean']:.3f} ± {s['sd']:.3f} | "
                     f"{s['control_mean']:.3f} ± {s['control_sd']:.3f} | {s['beats_control']} |")
    return "\n".join(lines)


def experiment_baselines() -> list[str]:
    """The commits that experiments derive from (``refs/exps/<xx>/<rest of the sha>/<name>``), HEAD
    first: what ``dvc exp show`` needs to list every experiment, without reading the metrics of every
    commit as ``--all-commits`` does (35 s on a 160-commit history against 1.4 s)."""
    proc = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], capture_output=True, text=True)
    shas = []
    for ref in proc.stdout.split():
        parts = ref.split("/")
        if len(parts) == 5 and len(parts[2]) == 2 and len(parts[3]) == 38:
            shas.append(parts[2] + parts[3])
    return ["HEAD", *sorted(set(shas))]


def exp_show() -> list[dict[str, Any]]:
    """``dvc exp show --json`` over every commit some experiment derives from, and HEAD."""
    cmd = ["dvc", "exp", "show", "--json"]
    for rev in experiment_baselines():
        cmd += ["--rev", rev]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EcdError(f"dvc exp show failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def compare_cells(rows: list[dict[str, Any]], first: str, second: str, read: Any, set_name: str, mode: str,
                  resamples: int, seed: int) -> dict[str, Any]:
    """Two grid cells (``strategy-loss``) against each other, seed by seed: the difference of their
    preference-trained students on ``set_name`` (prompt level, ``strict`` or ``loose``), each seed's
    two runs paired over the prompts, with a 95 % interval over prompts and seeds
    (:func:`ecd.uncertainty.seed_interval`). Seeds that only one cell has finished are left out."""
    from ecd.uncertainty import seed_interval

    done = {str(r["name"]): r for r in rows if r.get("state") == "success"}
    seeds = sorted({n.rsplit("-s", 1)[1] for n in done if n.startswith(first + "-s")} &
                   {n.rsplit("-s", 1)[1] for n in done if n.startswith(second + "-s")})
    if not seeds:
        raise EcdError(f"no seed has finished runs of both {first} and {second} (experiments named CELL-sN)")
    diffs = []
    for s in seeds:
        a, b = done[f"{first}-s{s}"], done[f"{second}-s{s}"]
        if a.get(f"preference.{set_name}.prompt_set") != b.get(f"preference.{set_name}.prompt_set"):
            raise EcdError(f"seed {s}: {first} and {second} were scored on different {set_name} prompts")
        va, vb = read(str(a["rev"]), "preference", set_name), read(str(b["rev"]), "preference", set_name)
        diffs.append(va.follow_all[mode].astype(float) - vb.follow_all[mode].astype(float))
    return {"seeds": seeds, **seed_interval(diffs, resamples, seed)}
