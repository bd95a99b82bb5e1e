"""The report a person reads after a run: the students side by side, what each round yielded, the
experiments' headline numbers, and the charts, as terminal tables, Markdown and one offline HTML page.

Every number comes from a file a stage wrote (``metrics/``, ``plots/``) or from ``dvc exp show``; the
charts are DVC's own plot definitions rendered by :mod:`ecd.charts`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecd import layout

METRIC_COLUMNS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
SET_TITLES = {"heldout": "held-out instructions", "ifeval": "IFEval (541 prompts)",
              "winrate": "judge win rate vs text-davinci-003"}

#: the columns of ``dvc exp show`` a user compares across experiments: each student's prompt-level
#: strict score on IFEval and on the held-out instructions. The README's ``dvc exp show --keep``
#: invocation and ``ecd report``'s experiment table use this one pattern.
HEADLINE = r"^(base|control|dpo)\.(ifeval|heldout)\.prompt_strict$"
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


def student_tables(data: dict[str, dict[str, dict]], baseline: str) -> list[Table]:
    """Per evaluation set: every model on every metric, with its delta against ``baseline``, then
    the per-category pass rates."""
    sets = sorted({s for m in data.values() for s in m}, key=lambda s: list(SET_TITLES).index(s) if s in SET_TITLES else 99)
    tables = []
    for set_name in sets:
        order = layout.STUDENTS
        models = sorted((m for m in data if set_name in data[m]), key=lambda m: (order.index(m) if m in order else 9, m))
        first = data[models[0]][set_name]
        ref = data.get(baseline, {}).get(set_name, {})
        n = first.get("n_prompts", first.get("judged", ""))
        title = f"{SET_TITLES.get(set_name, set_name)}, n={n}"
        categories = sorted(k for k in first if k.startswith("inst_strict_"))
        groups = [(title, ["win_rate"] if set_name == "winrate" else list(METRIC_COLUMNS))]
        if categories:
            groups.append((f"{title}: instructions followed per category (strict)", categories))
        for group_title, cols in groups:
            table = Table(group_title, ["model", *(c.removeprefix("inst_strict_") for c in cols)])
            for m in models:
                cells = []
                for c in cols:
                    v = data[m][set_name].get(c)
                    cell = "" if v is None else f"{v:.3f}"
                    if v is not None and m != baseline and c in ref:
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


def experiment_tables(rows: list[dict[str, Any]], max_params: int = 6) -> list[Table]:
    """The experiments of ``dvc exp show`` (flattened by :func:`ecd.grid.exp_rows`): their
    :data:`HEADLINE` columns with the preference run's margin over its control on IFEval, and, in a
    second table, the params each changed from the commit it derives from. Empty when there are none."""
    exps = sorted((r for r in rows if r.get("state") is not None and r.get("name")), key=lambda r: str(r["name"]))
    if not exps:
        return []
    pattern = re.compile(HEADLINE)
    order = {"ifeval": 0, "heldout": 1}
    columns = sorted({k for r in exps for k in r if pattern.match(k)},
                     key=lambda k: (order[k.split(".")[1]], layout.STUDENTS.index(k.split(".")[0])))
    scores = Table("Experiments: prompt-level strict", ["experiment", *(" ".join(c.split(".")[1::-1]) for c in columns),
                                                         "dpo − control ifeval"])
    changes = Table("Experiments: the params each changed", ["experiment", "changed params"])
    for r in exps:
        name = str(r["name"]) + ("" if r["state"] == "success" else f" ({r['state']})")
        done = r["state"] == "success"  # a running or queued experiment shows its baseline's metrics
        cells = [f"{r[c]:.3f}" if done and isinstance(r.get(c), (int, float)) else "" for c in columns]
        d, c = (r.get("dpo.ifeval.prompt_strict"), r.get("control.ifeval.prompt_strict")) if done else (None, None)
        margin = f"{d - c:+.3f}" if isinstance(d, (int, float)) and isinstance(c, (int, float)) else ""
        scores.rows.append([name, *cells, margin])
        params_now, before = r.get("params") or {}, r.get("baseline") or {}
        changed = [k for k in sorted(params_now) if params_now[k] != before.get(k)]
        text = ", ".join(f"{k}={_short(params_now[k])}" for k in changed[:max_params])
        if len(changed) > max_params:
            text += f", +{len(changed) - max_params} more"
        changes.rows.append([name, text or "(none: the params of its commit)"])
    return [scores, changes]


def html_report(tables: list[Table], notes: list[str], charts: list[Any]) -> str:
    """The report as one self-contained page: every table, the notes, then the charts."""
    from html import escape

    from ecd.charts import html_page, html_table

    sections = [(t.title, html_table(t.header, t.rows)) for t in tables]
    sections.append(("Notes", "".join(f"<p>{escape(n)}</p>" for n in notes)))
    return html_page("ecd report", sections, charts)
