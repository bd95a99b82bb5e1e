"""The report's pieces on small inputs: the yield table from per-round bookkeeping, the experiment
tables from ``dvc exp show --json``, and charts rendered by vl-convert (real renders, no browser;
the pipeline test opens a whole report in Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ecd.charts import Chart, grid_chart, html_page, html_table, render
from ecd.grid import exp_rows
from ecd.records import write_json
from ecd.report import experiment_tables, yield_table


def _loads_something(page: str) -> bool:
    """Whether the HTML outside its inline scripts loads a resource, or a script comes from a URL."""
    outside = re.sub(r"<script>.*?</script>", "", page, flags=re.S)
    return bool(re.search(r"<script[^>]*\ssrc=|<(img|iframe|link|source)\b[^>]*\s(src|href)=", outside))


def test_yield_table_reads_each_rounds_bookkeeping(tmp_path: Path) -> None:
    write_json(tmp_path / "rounds/r0/sample.json", {"calls": 10, "cache_hits": 4, "responses": 10, "cut_at_max_tokens": 2})
    write_json(tmp_path / "rounds/r0/verify.json", {"accepted": 7, "instructions": 10,
                                                    "eliminated_by_cause": {"cut": 2, "refusal": 1}})
    write_json(tmp_path / "rounds/r1/evolve.json", {"chains": 14, "evolved": 11, "teacher_calls": 14, "cache_hits": 0,
                                                    "eliminated_by_cause": {"lost_task": 2, "no_json": 1}})
    write_json(tmp_path / "rounds/r1/sample.json", {"calls": 11, "cache_hits": 0, "responses": 11, "cut_at_max_tokens": 0})
    write_json(tmp_path / "rounds/r1/verify.json", {"accepted": 5, "instructions": 11, "eliminated_by_cause": {}})
    table = yield_table(tmp_path)
    assert table is not None
    assert table.rows == [
        ["r0", "(seeds)", "", "10 (2)", "7/10", "cut 2, refusal 1", "10 (4)"],
        ["r1", "11/14", "lost_task 2, no_json 1", "11 (0)", "5/11", "", "25 (0)"],
    ]
    assert yield_table(tmp_path / "absent") is None


def _run(name: str, state: str, params: dict, dpo: float | None = None) -> dict:
    metrics = {} if dpo is None else {"metrics/evaluate.json": {"data": {
        m: {"ifeval": {"prompt_strict": v}, "heldout": {"prompt_strict": v / 2}}
        for m, v in (("base", 0.1), ("control", 0.2), ("dpo", dpo))}}}
    return {"executor": {"state": state} if state != "success" else None, "name": name,
            "revs": [{"rev": name, "name": name, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}]}


def test_experiment_tables_show_headline_scores_and_what_changed() -> None:
    base = {"train": {"seed": 0}, "pair": {"strategy": ["ecd"]}}
    show = [{"rev": "workspace", "name": None, "data": {"params": {"params.yaml": {"data": base}}}},
            {"rev": "abc", "name": "main", "data": {"params": {"params.yaml": {"data": base}}}, "experiments": [
                _run("seed-1", "success", {"train": {"seed": 1}, "pair": {"strategy": ["ecd"]}}, 0.35),
                _run("random", "success", {"train": {"seed": 0}, "pair": {"strategy": ["random"]}}, 0.15),
                _run("queued-one", "queued", base, 0.9)]}]
    scores, changes = experiment_tables(exp_rows(show))
    assert scores.header == ["experiment", "ifeval base", "ifeval control", "ifeval dpo", "heldout base",
                             "heldout control", "heldout dpo", "dpo − control ifeval"]
    assert scores.rows[0] == ["queued-one (queued)", "", "", "", "", "", "", ""]  # no baseline numbers shown as its own
    assert scores.rows[1] == ["random", "0.100", "0.200", "0.150", "0.050", "0.100", "0.075", "-0.050"]
    assert scores.rows[2][-1] == "+0.150"
    assert changes.rows == [["queued-one (queued)", "(none: the params of its commit)"],
                            ["random", 'pair.strategy=["random"]'], ["seed-1", "train.seed=1"]]
    assert experiment_tables(exp_rows([{"rev": "workspace", "data": {}}])) == []


def test_grid_chart_and_page_render_with_nothing_external(tmp_path: Path) -> None:
    summary = [{"strategy": "ecd", "loss": "rpo", "seeds": 3, "mean": 0.4, "sd": 0.05, "control_mean": 0.3, "control_sd": 0.02},
               {"strategy": "random", "loss": "rpo", "seeds": 3, "mean": 0.33, "sd": 0.04, "control_mean": 0.31, "control_sd": 0.03}]
    chart = grid_chart(summary, "ifeval.prompt_strict")
    files = render([chart], tmp_path)
    svg = (tmp_path / f"{chart.slug}.svg").read_text()
    assert [f.name for f in files] == [f"{chart.slug}.svg", f"{chart.slug}.png"]
    assert svg.count('aria-roledescription="bar"') == 4 and "SFT-only control" in svg and "random / rpo" in svg
    page = html_page("a <report>", [("Scores", html_table(["model", "score"], [["dpo", "0.400 (+0.100)"], ["<b>", "x"]]))], [chart])
    assert "<title>a &lt;report&gt;</title>" in page and "<td>&lt;b&gt;</td>" in page
    assert '<td class="num">0.400 (+0.100)</td>' in page
    assert not _loads_something(page)
    assert len(page) > 500_000 and "vegaEmbed" in page  # the libraries are inside the page
    # a spec's text cannot end the script element early
    tricky = Chart("t", {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": "bar",
                         "data": {"values": [{"a": "</script><script>alert(1)</script>", "b": 1}]},
                         "encoding": {"x": {"field": "a"}, "y": {"field": "b", "type": "quantitative"}}})
    assert "</script><script>alert" not in html_page("t", [], [tricky])
    assert json.loads(json.dumps(tricky.spec)) == tricky.spec
