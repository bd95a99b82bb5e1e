"""The report's tables: the students side by side with their intervals, the differences between
them, what each round yielded, and the experiments' headline numbers (``ecd.report`` assembles them).

Every number comes from a file a stage wrote (``metrics/``) or from ``dvc exp show``.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecd import layout
from ecd.evaluation import categories as evaluation_categories

METRIC_COLUMNS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
SET_TITLES = {"heldout": "held-out instructions", "ifeval": "IFEval (541 prompts)",
              "ifbench": "IFBench (294 prompts, constraint types never trained on)",
              "winrate": "judge win rate vs text-davinci-003"}

#: the columns of ``dvc exp show`` a user compares across experiments: each student's prompt-level
#: strict score on IFEval and on the held-out instructions, and IFBench's headline (prompt-level
#: loose). The README's ``dvc exp show --keep`` invocation and ``ecd report``'s experiment table
#: use this one pattern.
HEADLINE = r"^(base|control|preference)\.((ifeval|heldout)\.prompt_strict|ifbench\.prompt_loose)$"
HEADLINE_DVC_ARGS = ["dvc", "exp", "show", "--drop", ".*", "--keep", f"Experiment|{HEADLINE}"]
HEADLINE_DVC = shlex.join(HEADLINE_DVC_ARGS)


@dataclass
class Table:
    """A titled table of formatted cells, printed by rich and written as Markdown and HTML."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> list[str]:
        return [f"### {self.title}", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header),
                *("| " + " | ".join(r) + " |" for r in self.rows), ""]


def ci_text(value: float, lo: float | None, hi: float | None, signed: bool = False) -> str:
    """``0.202 [0.170, 0.236]``, or ``+0.037 [+0.017, +0.057]`` for a difference."""
    f = "{:+.3f}" if signed else "{:.3f}"
    if lo is None or hi is None:
        return f.format(value)
    return f"{f.format(value)} [{f.format(lo)}, {f.format(hi)}]"


def _verdict(d: dict[str, float]) -> str:
    """What an interval says, in words."""
    if d["lo"] > 0:
        return "higher"
    if d["hi"] < 0:
        return "lower"
    return f"no detectable difference (could see ≥{d['mde']:.3f})"


def difference_tables(compare: dict[str, dict[str, dict[str, dict[str, float]]]], baseline: str) -> list[Table]:
    """Per evaluation set, the paired differences between students (``metrics/compare.json``):
    each metric's difference with its 95 % interval, McNemar's exact p on prompt-level strict, the
    smallest difference the set could detect, and what the interval says. Comparisons against
    ``baseline`` come first."""
    tables = []
    for set_name in sorted(compare, key=lambda s: list(SET_TITLES).index(s) if s in SET_TITLES else 99):
        pairs = sorted(compare[set_name], key=lambda k: (not k.endswith(f"-{baseline}"), k != "preference-control"))
        table = Table(f"{SET_TITLES.get(set_name, set_name)}: paired differences, 95 % intervals",
                      ["difference", *METRIC_COLUMNS, "p (McNemar)", "detectable", "verdict (prompt_strict)"])
        for key in pairs:
            d = compare[set_name][key]
            a, b = key.split("-", 1)
            cells = [ci_text(d[m]["delta"], d[m].get("lo"), d[m].get("hi"), signed=True) if m in d else "" for m in METRIC_COLUMNS]
            ps = d.get("prompt_strict", {})
            p = ps.get("p")
            table.rows.append([f"{a} − {b}", *cells, "" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}",
                               f"{ps['mde']:.3f}" if "mde" in ps else "", _verdict(ps) if "lo" in ps else ""])
        tables.append(table)
    return tables


def student_tables(data: dict[str, dict[str, dict]], baseline: str, with_deltas: bool = True) -> list[Table]:
    """Per evaluation set: every model on every metric with its 95 % interval where the metrics
    have one (else its delta against ``baseline``, when ``with_deltas``), then the per-category
    pass rates."""
    sets = sorted({s for m in data.values() for s in m}, key=lambda s: list(SET_TITLES).index(s) if s in SET_TITLES else 99)
    tables = []
    for set_name in sets:
        order = layout.STUDENTS
        models = sorted((m for m in data if set_name in data[m]), key=lambda m: (order.index(m) if m in order else 9, m))
        first = data[models[0]][set_name]
        ref = data.get(baseline, {}).get(set_name, {})
        n = first.get("n_prompts", first.get("judged", ""))
        title = f"{SET_TITLES.get(set_name, set_name)}, n={n}"
        categories = sorted(f"inst_strict_{c}" for c in evaluation_categories(first))
        groups = [(title, ["win_rate"] if set_name == "winrate" else list(METRIC_COLUMNS))]
        if categories:
            groups.append((f"{title}: instructions followed per category (strict)", categories))
        if "seen_instructions" in first:
            groups.append((f"{title}: constraint types the training pairs contained (seen) and not (unseen), strict; "
                           f"{first['seen_instructions']} seen and {first['unseen_instructions']} unseen instructions",
                           ["seen_inst_strict", "unseen_inst_strict", "seen_prompt_strict", "unseen_prompt_strict"]))
        for group_title, cols in groups:
            heads = [c.removesuffix("_strict") if c.startswith(("seen_", "unseen_")) else c.removeprefix("inst_strict_")
                     for c in cols]
            table = Table(group_title, ["model", *heads])
            for m in models:
                cells = []
                for c in cols:
                    row = data[m][set_name]
                    v = row.get(c)
                    cell = "" if v is None else ci_text(v, row.get(f"{c}_lo"), row.get(f"{c}_hi"))
                    if v is not None and f"{c}_lo" not in row and with_deltas and m != baseline and c in ref:
                        cell += f" ({v - ref[c]:+.3f})"
                    cells.append(cell)
                table.rows.append([m, *cells])
            tables.append(table)
    return tables


def _causes(counts: dict[str, int], top: int = 3) -> str:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {v}" for k, v in ranked[:top])
    return text + (f", +{len(ranked) - top} more" if len(ranked) > top else "")


def yield_table(metrics_dir: Path = layout.METRICS) -> Table | None:
    """What each round yielded, from the per-round bookkeeping the stages write under
    ``metrics/rounds/``: chains evolved (and why the rest were not), answers (cut at the token
    limit), answers verified, and the teacher's calls against the call cache."""
    rounds_dir = metrics_dir / "rounds"
    if not rounds_dir.is_dir():
        return None
    table = Table("Yield per round", ["round", "evolved", "not evolved (top causes)", "answers (cut)", "verified",
                                      "not verified (top causes)", "teacher calls (cache hits)"])
    for rdir in sorted((d for d in rounds_dir.iterdir() if d.is_dir()), key=lambda d: int(re.sub(r"\D", "", d.name) or 0)):
        def load(stage: str) -> dict[str, Any]:
            path = rdir / f"{stage}.json"
            return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

        evolve, sample, verify = load("evolve"), load("sample"), load("verify")
        calls = evolve.get("teacher_calls", 0) + sample.get("calls", 0)
        hits = evolve.get("cache_hits", 0) + sample.get("cache_hits", 0)
        table.rows.append([
            rdir.name,
            f"{evolve['evolved']}/{evolve['chains']}" if evolve else "(seeds)",
            _causes(evolve.get("eliminated_by_cause", {})),
            f"{sample.get('responses', 0)} ({sample.get('cut_at_max_tokens', 0)})",
            f"{verify.get('accepted', 0)}/{verify.get('instructions', 0)}",
            _causes(verify.get("eliminated_by_cause", {})),
            f"{calls} ({hits})",
        ])
    return table if table.rows else None


def _short(value: Any, width: int = 28) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


#: params that change how a run's uncertainty is estimated, not the run: runs that differ only in
#: these (and in seeds) are one setting
STATISTICS_KEYS = frozenset({"evaluate.bootstrap_resamples"})


def is_seed_key(key: str) -> bool:
    """A param that only reseeds a run (``train.seed``, ``evaluate.bootstrap_seed``, ...) or only
    changes how its intervals are estimated (:data:`STATISTICS_KEYS`)."""
    last = key.rsplit(".", 1)[-1]
    return last == "seed" or last.endswith("_seed") or key in STATISTICS_KEYS


def baseline_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The commit's own run: the first commit row of ``dvc exp show`` with metrics, else the workspace."""
    commits = [r for r in rows if r.get("state") is None and any(k.startswith("preference.") for k in r)]
    named = [r for r in commits if r.get("name") != "workspace"]
    found = named or commits
    return found[0] if found else None


def changed_params(params_now: dict[str, Any], before: dict[str, Any], max_params: int, seeds: bool = True) -> str:
    changed = [k for k in sorted(params_now) if params_now[k] != before.get(k) and (seeds or not is_seed_key(k))]
    text = ", ".join(f"{k}={_short(params_now[k])}" for k in changed[:max_params])
    if len(changed) > max_params:
        text += f", +{len(changed) - max_params} more"
    return text


def experiment_tables(rows: list[dict[str, Any]], max_params: int = 6) -> list[Table]:
    """The experiments of ``dvc exp show`` (flattened by :func:`ecd.grid.exp_rows`) beside the
    commit's own run: their :data:`HEADLINE` columns with the preference run's margin over its
    control on IFEval, and, in a second table, the params each changed from the commit it derives
    from. A held-out score measured on other prompts than the baseline's (another split) is marked
    † and not compared. Empty when there are no experiments."""
    exps = sorted((r for r in rows if r.get("state") is not None and r.get("name")), key=lambda r: str(r["name"]))
    if not exps:
        return []
    base = baseline_row(rows)
    pattern = re.compile(HEADLINE)
    order = {"ifeval": 0, "heldout": 1, "ifbench": 2}
    columns = sorted({k for r in exps + ([base] if base else []) for k in r if pattern.match(k)},
                     key=lambda k: (order[k.split(".")[1]], layout.STUDENTS.index(k.split(".")[0])))
    def label(c: str) -> str:
        student, set_name, metric = c.split(".")
        return f"{set_name} {student}" + (" (loose)" if metric.endswith("loose") else "")

    scores = Table("Experiments: prompt-level strict (IFBench: loose, its headline)",
                   ["experiment", *(label(c) for c in columns), "preference − control ifeval"])
    changes = Table("Experiments: the params each changed", ["experiment", "changed params"])
    listed = ([(f"baseline ({base['name']})", base, True)] if base else []) + \
        [(str(r["name"]) + ("" if r["state"] == "success" else f" ({r['state']})"), r, r["state"] == "success") for r in exps]
    for name, r, done in listed:  # a running or queued experiment shows its baseline's metrics: not shown
        def cell(c: str) -> str:
            v = r.get(c)
            if not done or not isinstance(v, (int, float)):
                return ""
            set_name = c.split(".")[1]
            other = base is not None and r is not base and \
                r.get(f"preference.{set_name}.prompt_set", "") != base.get(f"preference.{set_name}.prompt_set", "")
            return f"{v:.3f}" + (" †" if other else "")
        d, c = (r.get("preference.ifeval.prompt_strict"), r.get("control.ifeval.prompt_strict")) if done else (None, None)
        margin = f"{d - c:+.3f}" if isinstance(d, (int, float)) and isinstance(c, (int, float)) else ""
        scores.rows.append([name, *(cell(c) for c in columns), margin])
        if r is not base:
            text = changed_params(r.get("params") or {}, r.get("baseline") or {}, max_params)
            changes.rows.append([name, text or "(none: the params of its commit)"])
    return [scores, changes]


#: reads one student's per-prompt verdicts on one set at a revision (an experiment's commit)
