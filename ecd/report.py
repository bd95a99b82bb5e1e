"""The report a person reads after a run: the students side by side, what each round yielded, the
experiments' headline numbers and their settings over seeds, and the charts — assembled here, shown by
``ecd report`` as terminal tables, and written as Markdown and one offline HTML page.

Every number comes from a file a stage wrote (``metrics/``, ``plots/``) or from ``dvc exp show``; the
charts are DVC's own plot definitions rendered by :mod:`ecd.charts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecd import charts
from ecd.errors import EcdError
from ecd.records import read_text, write_text
from ecd.report_tables import (HEADLINE_DVC, Table, difference_tables, experiment_tables, student_tables,
                               yield_table)
from ecd.seed_runs import seed_summary, seed_table

#: the sets and metrics whose settings over seeds the report summarises (IFBench's headline is loose)
SEED_METRICS = (("ifeval", "prompt_strict"), ("heldout", "prompt_strict"), ("ifbench", "prompt_loose"))


@dataclass
class Report:
    tables: list[Table]
    notes: list[str]
    #: charts made from the experiments (each setting's margin over seeds), beside dvc.yaml's own
    charts: list[Any] = field(default_factory=list)

    def markdown(self, charts_dir: Path | None = None, chart_list: list[Any] | None = None) -> str:
        """The tables and notes as Markdown, with the rendered charts linked from ``charts_dir``."""
        md = [line for table in self.tables for line in table.markdown()]
        if charts_dir is not None and chart_list:
            md += ["### Charts", ""] + [line for c in chart_list for line in (f"![{c.title}]({charts_dir / (c.slug + '.svg')})", "")]
        return "\n".join(["# ecd evaluation", "", *md, *self.notes, ""])


def build_report(metrics: Path, baseline: str, experiments: bool, resamples: int, seed: int) -> Report:
    """The report from the evaluate stage's metrics (and ``compare.json`` beside them), the rounds'
    yields and, with ``experiments``, ``dvc exp show``'s runs (``resamples``/``seed``: the bootstrap
    behind the intervals over seeds)."""
    from ecd import grid

    try:
        data = json.loads(read_text(metrics))
    except ValueError:
        raise EcdError(f"{metrics}: not a JSON metrics file") from None
    if baseline not in data:
        raise EcdError(f"no model {baseline!r} in {metrics}; models: {', '.join(data)}")
    compare_path = metrics.parent / "compare.json"
    compare = json.loads(read_text(compare_path)) if compare_path.exists() else {}
    tables = student_tables(data, baseline, with_deltas=not compare) + difference_tables(compare, baseline)
    if compare:
        notes = ["[lo, hi]: 95 % intervals from a paired bootstrap over prompts (docs/evidence.md); a difference "
                 "whose interval holds 0 is not told apart from noise; 'detectable' is the smallest true difference "
                 f"the set would show with 80 % power at the 5 % level; strict/loose as IFEval defines them; metrics: {metrics}"]
    else:
        notes = [f"deltas in brackets are against `{baseline}` (no intervals: {compare_path} is missing; re-run "
                 f"`dvc repro evaluate`); strict/loose as IFEval defines them; metrics: {metrics}"]
    yields = yield_table(metrics.parent)
    tables += [yields] if yields else []
    report = Report(tables, notes)
    if not experiments:
        return report
    try:
        rows = grid.exp_rows(grid.exp_show())
    except EcdError as exc:
        notes.append(f"no experiment table: {exc}")
        return report
    exp_tables = experiment_tables(rows)
    tables += exp_tables
    if not exp_tables:
        return report
    notes.append(f"the same columns in DVC: `{HEADLINE_DVC}`; † a held-out score on other "
                 "prompts than the baseline's (another split): not comparable with it")
    seeds = []
    for set_name, metric_name in SEED_METRICS:
        groups = seed_summary(rows, resamples=resamples, seed=seed, set_name=set_name, metric_name=metric_name)
        table = seed_table(groups, set_name, metric_name)
        if table:
            seeds.append(table)
            if any(g.margin for g in groups):
                report.charts.append(charts.margin_chart(groups, f"{set_name} {metric_name}"))
    tables += seeds
    if seeds:
        notes.append("settings over seeds: runs whose params differ only in seed keys form one row; the "
                     "margin's interval resamples prompts and adds the seeds' spread as a Student t draw "
                     "(docs/evidence.md)")
    return report


def write_html(report: Report, html: Path) -> tuple[list[Any], Path, list[Path]]:
    """``html`` as one self-contained page (tables, notes and every chart, drawn without a network),
    each chart also as SVG and PNG in ``<name>-charts/`` beside it; returns the charts, their folder
    and the image files."""
    chart_list = charts.dvc_charts() + report.charts
    chart_dir = html.parent / f"{html.stem}-charts"
    files = charts.render(chart_list, chart_dir)
    write_text(html, html_report(report.tables, report.notes, chart_list))
    return chart_list, chart_dir, files


def html_report(tables: list[Table], notes: list[str], chart_list: list[Any]) -> str:
    """The report as one self-contained page: every table, the notes, then the charts."""
    from html import escape

    from ecd.charts import html_page, html_table

    sections = [(t.title, html_table(t.header, t.rows)) for t in tables]
    sections.append(("Notes", "".join(f"<p>{escape(n)}</p>" for n in notes)))
    return html_page("ecd report", sections, chart_list)
