"""The report's pieces on small inputs: the yield table from per-round bookkeeping, the experiment
tables from ``dvc exp show --json``, and charts rendered by vl-convert (real renders, no browser;
the pipeline test opens a whole report in Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ecd.charts import Chart, html_page, html_table, margin_chart, render
from ecd.grid import exp_rows
from ecd.records import write_json
from ecd.report_tables import experiment_tables, yield_table


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


def _run(name: str, state: str, params: dict, dpo: float | None = None, student: str = "preference") -> dict:
    metrics = {} if dpo is None else {"metrics/evaluate.json": {"data": {
        m: {"ifeval": {"prompt_strict": v}, "heldout": {"prompt_strict": v / 2}}
        for m, v in (("base", 0.1), ("control", 0.2), (student, dpo))}}}
    return {"executor": {"state": state} if state != "success" else None, "name": name,
            "revs": [{"rev": name, "name": name, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}]}


def test_experiment_tables_show_headline_scores_and_what_changed() -> None:
    base = {"train": {"seed": 0}, "pair": {"strategy": ["ecd"]}}
    show = [{"rev": "workspace", "name": None, "data": {"params": {"params.yaml": {"data": base}}}},
            {"rev": "abc", "name": "main", "data": {"params": {"params.yaml": {"data": base}}}, "experiments": [
                _run("seed-1", "success", {"train": {"seed": 1}, "pair": {"strategy": ["ecd"]}}, 0.35),
                # a run from before the preference student was renamed (its metrics under "dpo") reads the same
                _run("random", "success", {"train": {"seed": 0}, "pair": {"strategy": ["random"]}}, 0.15, student="dpo"),
                _run("queued-one", "queued", base, 0.9)]}]
    scores, changes = experiment_tables(exp_rows(show))
    assert scores.header == ["experiment", "ifeval base", "ifeval control", "ifeval preference", "heldout base",
                             "heldout control", "heldout preference", "preference − control ifeval"]
    assert scores.rows[0] == ["queued-one (queued)", "", "", "", "", "", "", ""]  # no baseline numbers shown as its own
    assert scores.rows[1] == ["random", "0.100", "0.200", "0.150", "0.050", "0.100", "0.075", "-0.050"]
    assert scores.rows[2][-1] == "+0.150"
    assert changes.rows == [["queued-one (queued)", "(none: the params of its commit)"],
                            ["random", 'pair.strategy=["random"]'], ["seed-1", "train.seed=1"]]
    assert experiment_tables(exp_rows([{"rev": "workspace", "data": {}}])) == []


def test_margin_chart_and_page_render_with_nothing_external(tmp_path: Path) -> None:
    from ecd.seed_runs import SeedGroup

    groups = [SeedGroup("baseline", ["main", "s1", "s2"], {}, {"delta": 0.25, "lo": 0.1, "hi": 0.4, "runs": 3}),
              SeedGroup('pair.strategy=["random"]', ["r0", "r1", "r2"], {}, {"delta": 0.1, "lo": -0.05, "hi": 0.2, "runs": 3}),
              SeedGroup("other prompts", ["x"], {}, None, "runs scored on different prompts: not combined")]
    chart = margin_chart(groups, "ifeval prompt_strict")
    files = render([chart], tmp_path)
    svg = (tmp_path / f"{chart.slug}.svg").read_text()
    assert [f.name for f in files] == [f"{chart.slug}.svg", f"{chart.slug}.png"]
    assert [v["setting"] for v in chart.spec["data"]["values"]] == ["baseline (3 runs)", 'pair.strategy=["random"] (3 runs)']
    assert "baseline (3 runs)" in svg and svg.count('aria-roledescription="point"') == 2
    page = html_page("a <report>", [("Scores", html_table(["model", "score"], [["dpo", "0.400 [0.350, 0.450]"], ["<b>", "x"]]))],
                     [chart])
    assert "<title>a &lt;report&gt;</title>" in page and "<td>&lt;b&gt;</td>" in page
    assert '<td class="num">0.400 [0.350, 0.450]</td>' in page
    assert not _loads_something(page)
    assert len(page) > 500_000 and "vegaEmbed" in page  # the libraries are inside the page
    # a spec's text cannot end the script element early
    tricky = Chart("t", {"$schema": "https://vega.github.io/schema/vega-lite/v5.json", "mark": "bar",
                         "data": {"values": [{"a": "</script><script>alert(1)</script>", "b": 1}]},
                         "encoding": {"x": {"field": "a"}, "y": {"field": "b", "type": "quantitative"}}})
    assert "</script><script>alert" not in html_page("t", [], [tricky])
    assert json.loads(json.dumps(tricky.spec)) == tricky.spec


def _seeded(name: str, params: dict, dpo: float, control: float, prompt_set: str = "s1") -> dict:
    metrics = {"metrics/evaluate.json": {"data": {
        "base": {"ifeval": {"prompt_strict": 0.1, "prompt_set": prompt_set}},
        "control": {"ifeval": {"prompt_strict": control, "prompt_set": prompt_set}},
        "preference": {"ifeval": {"prompt_strict": dpo, "prompt_set": prompt_set}}}}}
    return {"executor": None, "name": name,
            "revs": [{"rev": f"rev-{name}", "name": name, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}]}


def test_seed_table_groups_runs_that_differ_only_in_seeds() -> None:
    """Runs whose params differ only in seed keys form one row with the mean ± sd of each student and
    the margin's interval over prompts and seeds, read from each run's per-prompt verdicts; the
    commit's own run is the baseline row; runs on different prompts are not combined."""
    import numpy as np

    from ecd.report_tables import is_seed_key
    from ecd.seed_runs import seed_summary, seed_table
    from ecd.uncertainty import Verdicts, seed_interval

    def params(strategy: str, seed: int) -> dict:
        return {"pair": {"strategy": [strategy], "seed": seed}, "train": {"seed": seed}, "evaluate": {"bootstrap_seed": 0}}

    rng = np.random.default_rng(0)
    answers = {}  # rev → model → per-prompt follow_all
    def run(name: str, strategy: str, seed: int, prompt_set: str = "s1") -> dict:
        ctl = rng.random(200) < 0.3
        dpo = ctl | (rng.random(200) < (0.2 if strategy == "ecd" else 0.05))
        answers[f"rev-{name}"] = {"control": ctl, "preference": dpo}
        return _seeded(name, params(strategy, seed), float(dpo.mean()), float(ctl.mean()), prompt_set)

    def read(rev: str, model: str, set_name: str) -> Verdicts:
        return Verdicts.from_results([{"key": str(i), "prompt": str(i), "follow_instruction_list": [bool(f)]}
                                      for i, f in enumerate(answers[rev][model])])

    head = run("main", "ecd", 0)["revs"][0]
    head["data"]["params"]["params.yaml"]["data"] = params("ecd", 0)
    show = [{"rev": "workspace", "name": None, "data": {}},
            {**head, "experiments": [run("ecd-s1", "ecd", 1), run("ecd-s2", "ecd", 2), run("random-s0", "random", 0),
                                     run("random-s1", "random", 1), run("other-prompts", "random", 2, "s2")]}]
    table = seed_table(seed_summary(exp_rows(show), read=read, resamples=2000, seed=0), "ifeval", "prompt_strict")
    assert table is not None and [r[1] for r in table.rows] == ["3", "3"]
    assert table.rows[0][0].startswith("baseline (seeds: main, ecd-s1, ecd-s2)")
    assert table.rows[1][0].startswith('pair.strategy=["random"]') and "other-prompts" in table.rows[1][0]
    assert table.rows[1][-1] == "runs scored on different prompts: not combined"
    diffs = [answers[r]["preference"].astype(float) - answers[r]["control"].astype(float) for r in ("rev-main", "rev-ecd-s1", "rev-ecd-s2")]
    s = seed_interval(diffs, 2000, 0)
    assert table.rows[0][-1] == f"{s['delta']:+.3f} [{s['lo']:+.3f}, {s['hi']:+.3f}]"
    dpo = [float(answers[r]["preference"].mean()) for r in ("rev-main", "rev-ecd-s1", "rev-ecd-s2")]
    assert table.rows[0][5] == f"{np.mean(dpo):.3f} ± {np.std(dpo, ddof=1):.3f}"
    assert is_seed_key("train.seed") and is_seed_key("evaluate.bootstrap_seed") and not is_seed_key("pair.seeds_file")


def test_seed_groups_count_a_rerun_of_the_baseline_once() -> None:
    from ecd.seed_runs import seed_groups

    same = {"pair": {"seed": 0}, "train": {"seed": 0}}
    head = _seeded("main", same, 0.3, 0.2)["revs"][0]
    show = [{**head, "experiments": [_seeded("ecd-rpo-s0", same, 0.3, 0.2),
                                     _seeded("ecd-rpo-s1", {"pair": {"seed": 1}, "train": {"seed": 1}}, 0.4, 0.2)]}]
    groups = seed_groups(exp_rows(show))
    assert [[r["name"] for r in g] for g in groups] == [["main", "ecd-rpo-s1"]]


def test_grid_cells_compare_seed_by_seed_over_the_same_prompts() -> None:
    import numpy as np
    import pytest

    from ecd.errors import EcdError
    from ecd.grid import compare_cells
    from ecd.uncertainty import Verdicts, seed_interval

    rng = np.random.default_rng(3)
    answers = {f"rev-{c}-s{s}": rng.random(150) < (0.4 if c == "ecd-rpo" else 0.3)
               for c in ("ecd-rpo", "random-rpo") for s in (0, 1)}

    def read(rev: str, model: str, set_name: str) -> Verdicts:
        return Verdicts.from_results([{"key": str(i), "prompt": str(i), "follow_instruction_list": [bool(f)]}
                                      for i, f in enumerate(answers[rev])])

    show = [{"rev": "abc", "name": "main", "data": {}, "experiments": [
        _seeded(f"{c}-s{s}", {"train": {"seed": s}}, 0.3, 0.2) for c in ("ecd-rpo", "random-rpo") for s in (0, 1)]
        + [_seeded("ecd-rpo-s2", {"train": {"seed": 2}}, 0.3, 0.2)]}]
    result = compare_cells(exp_rows(show), "ecd-rpo", "random-rpo", read, "ifeval", "strict", 2000, 0)
    assert result["seeds"] == ["0", "1"]  # seed 2 has no random run
    diffs = [answers[f"rev-ecd-rpo-s{s}"].astype(float) - answers[f"rev-random-rpo-s{s}"].astype(float) for s in (0, 1)]
    expected = seed_interval(diffs, 2000, 0)
    assert (result["delta"], result["lo"], result["hi"]) == (expected["delta"], expected["lo"], expected["hi"])
    with pytest.raises(EcdError, match="no seed has finished runs of both"):
        compare_cells(exp_rows(show), "ecd-rpo", "model_gap-rpo", read, "ifeval", "strict", 100, 0)
