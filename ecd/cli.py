"""The ``ecd`` command: reports and maintenance around the DVC pipeline (which ``dvc repro`` runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ecd import layout
from ecd import report as report_mod
from ecd.records import write_text
from ecd.report_tables import Table as ReportTable
from ecd.errors import EcdError, report_errors
from ecd.cli_experiments import grid_app, profile_app, study_app
from ecd.uncertainty import bootstrap_settings

app = typer.Typer(help="Evolutionary Contrastive Distillation as a DVC pipeline.", no_args_is_help=True)
cache_app = typer.Typer(help="The content-addressed call cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(grid_app, name="grid")
app.add_typer(study_app, name="study")
app.add_typer(profile_app, name="profile")
out = Console()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"ecd {version('ecd')}", markup=False)
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                           help="print ecd's version and exit")) -> None:
    """Evolutionary Contrastive Distillation as a DVC pipeline."""


def _print(table: ReportTable) -> None:
    rich_table = Table(title=table.title, min_width=min(len(table.title) + 4, 100))
    for i, h in enumerate(table.header):
        rich_table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in table.rows:
        rich_table.add_row(*(Text(c) for c in r))  # cells are text: "[0.17, 0.24]" is no markup
    out.print(rich_table)


@app.command()
@report_errors
def report(
    metrics: Path = typer.Option(layout.METRICS / "evaluate.json", help="the evaluate stage's metrics"),
    baseline: str = typer.Option("control", help="the model the deltas are taken against"),
    markdown: Path = typer.Option(None, "--markdown", help="also write the tables to this Markdown file"),
    html: Path = typer.Option(None, "--html", help="also write one self-contained HTML page (tables and charts, "
                              "drawn without a network); the charts go as SVG and PNG to <name>-charts/ beside it"),
    experiments: bool = typer.Option(True, "--experiments/--no-experiments",
                                     help="add the headline numbers of `dvc exp show` (and a chart of the grid, if one ran)"),
) -> None:
    """Compare the students on every metric, with deltas against the SFT-only control; what each
    round yielded; the experiments' headline numbers; and, with --html, the charts of dvc.yaml."""
    report_ = report_mod.build_report(metrics, baseline, experiments, *bootstrap_settings())
    for table in report_.tables:
        _print(table)
    for note in report_.notes:
        out.print(note, markup=False)
    chart_dir, chart_list = None, None
    if html:
        chart_list, chart_dir, files = report_mod.write_html(report_, html)
        out.print(f"wrote {html} ({len(chart_list)} charts, no external resources) and {len(files)} images in {chart_dir}")
    if markdown:
        if chart_dir is not None:
            chart_dir = chart_dir.relative_to(markdown.parent) if chart_dir.is_relative_to(markdown.parent) else chart_dir.resolve()
        write_text(markdown, report_.markdown(chart_dir, chart_list))
        out.print(f"wrote {markdown}")


def _score_benchmark(name: str, responses: Path, output_dir: Path, input_path: Path | None) -> None:
    from ecd.evaluation import BENCHMARKS, score_responses

    bench = BENCHMARKS[name]
    summary = score_responses(input_path or bench.input, responses, output_dir, None if input_path else bench.sha256)
    print(json.dumps(summary, indent=2))
    if summary.get("unscored_prompts"):
        print(f"note: {summary['unscored_prompts']} prompts not scored ({summary['unscored_types']}): a language "
              "resource is missing; `python -m ecd.resources` installs it", file=sys.stderr)


@app.command("ifeval")
@report_errors
def ifeval_cmd(
    responses: Path = typer.Option(..., "--responses", help='JSONL of {"prompt", "response"}, IFEval\'s format'),
    output_dir: Path = typer.Option(..., "--output-dir", help="where eval_results_{strict,loose}.jsonl go"),
    input_path: Path = typer.Option(None, "--input", help="IFEval input JSONL (default: the 541 shipped prompts)"),
) -> None:
    """Score responses to IFEval prompts with IFEval's strict and loose rules; print a JSON summary."""
    _score_benchmark("ifeval", responses, output_dir, input_path)


@app.command("ifbench")
@report_errors
def ifbench_cmd(
    responses: Path = typer.Option(..., "--responses", help='JSONL of {"prompt", "response"}, IFBench\'s format'),
    output_dir: Path = typer.Option(..., "--output-dir", help="where eval_results_{strict,loose}.jsonl go"),
    input_path: Path = typer.Option(None, "--input", help="IFBench input JSONL (default: the 294 shipped test prompts)"),
) -> None:
    """Score responses to IFBench's out-of-distribution prompts (58 constraint types ecd never trains
    on), strict and loose as IFBench scores them; print a JSON summary (prompt-level loose is the
    benchmark's headline)."""
    _score_benchmark("ifbench", responses, output_dir, input_path)


@app.command("constraints")
@report_errors
def constraints_cmd(markdown: bool = typer.Option(False, "--markdown", help="print a Markdown table")) -> None:
    """List every constraint type: taxonomy place, how it is checked, whether it has a rewrite."""
    import random

    from ecd import constraints as C

    rows = []
    for branch, subs in C.taxonomy().items():
        for sub, ids in subs.items():
            for type_id in ids:
                t = C.get(type_id)
                kwargs = t.sample(random.Random(0), C.SampleContext(
                    instruction="Describe the history of the bicycle in the city.",
                    response="Bicycles arrived in the city early in the nineteenth century and spread fast among "
                             "workers, students and families. Cities changed. Today many people ride.",
                    title="bicycle history"))
                example = t.describe(kwargs, random.Random(0)) if kwargs is not None else ""
                how = "code" if t.verifiable else f"judge: {t.judge_question(kwargs or {})}"
                rows.append((f"{branch}/{sub}", type_id, "IFEval" if t.ifeval else "IFBench" if t.held_out else "ecd", how,
                             "yes" if t.has_rewrite else "no", example.replace("\n", " ")))
    header = ("taxonomy", "id", "source", "checked by", "rewrite", "example description")
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        return
    table = Table(title=f"{len(rows)} constraint types")
    for h in header:
        table.add_column(h)
    for r in rows:
        table.add_row(*(Text(c) for c in r))  # descriptions hold "[name]" placeholders: text, not markup
    out.print(table)


@app.command("inspect")
@report_errors
def inspect_cmd(
    path: Path = typer.Argument(layout.PAIRS, help="the pair stage's folder, or a round's (data/rounds/r3) for its chains"),
    n: int = typer.Option(None, "--n", min=1, help="items to show (default: 5 in the terminal, all in --html)"),
    split: str = typer.Option("train", help="train or test (pairs)"),
    strategy: str = typer.Option(None, help="only pairs of this strategy (ecd, model_gap, random)"),
    seed: int = typer.Option(None, help="a random sample drawn with this seed instead of the first items"),
    html: Path = typer.Option(None, "--html", help="write one self-contained page here instead of printing"),
) -> None:
    """Show pairs or a round's chains. Pairs: the prompt, its constraints (missed ones in red), the
    chosen and rejected answers with what differs marked (underlined in the chosen, struck through in
    the rejected). Chains: each seed's instruction growing round by round, the words each round added
    marked. ``--html`` writes the same as one page, filterable by strategy, round and constraint type."""
    import random

    def sample(items: list[Any]) -> list[Any]:
        count = n if n is not None else (len(items) if html else 5)
        return random.Random(seed).sample(items, min(count, len(items))) if seed is not None else items[:count]

    how = f"drawn with seed {seed}" if seed is not None else "the first"
    if (path / "state.jsonl").exists() and not (path / "chains.jsonl").exists():
        raise EcdError(f"{path} holds the seeds (round 0), which have no chains yet: inspect a later round (data/rounds/r1)")
    if (path / "chains.jsonl").exists():
        from ecd.viewer import chain_history, chains_page

        if not path.name.startswith("r") or not path.name[1:].isdigit():
            raise EcdError(f"{path}: a round's folder is named rN (data/rounds/r3)")
        history = chain_history(path.parent, int(path.name[1:]))
        shown = sample(history)
        _show(shown, html, chains_page, _chain_panel, f"chains of {path} ({len(shown)} of {len(history)})",
              f"{len(shown)} of {len(history)} chains of {path} ({how})")
        return
    from ecd.pairs import load_pairs

    if split not in ("train", "test"):
        raise EcdError(f"--split {split!r}: the pairs have a train and a test split")
    rows = load_pairs(path, split).to_list()
    if strategy:
        present = sorted({r["strategy"] for r in rows})
        if strategy not in present:
            raise EcdError(f"no {strategy} pairs in {path} ({split}); its strategies: {', '.join(present) or 'none'}")
        rows = [r for r in rows if r["strategy"] == strategy]
    total = len(rows)
    shown = sample(rows)
    from ecd.viewer import pairs_page

    _show(shown, html, pairs_page, _pair_panel, f"{split} pairs of {path} ({len(shown)} of {total})",
          f"{len(shown)} of {total} {split} pairs{' (' + strategy + ')' if strategy else ''} in {path} ({how})")


def _show(items: list[Any], html: Path | None, page: Any, panel: Any, title: str, what: str) -> None:
    """``items`` as one page at ``html``, or as a panel each in the terminal; then what was shown."""
    if html:
        write_text(html, page(items, title))
        out.print(f"wrote {html}: {what}", markup=False)
        return
    for item in items:
        out.print(panel(item))
    out.print(what, markup=False)


def _pair_panel(r: dict[str, Any]) -> Any:
    from rich.panel import Panel

    from ecd.diagnosis import word_diff

    missed = set(r["missed_constraints"])
    cons = Text()
    for cid in r["instruction_id_list"]:
        style = "bold red" if cid in missed else "green"
        mark = "missed by rejected" if cid in missed else "passed by both"
        cons.append(f"  {cid}", style=style).append(f"  ({mark}{', new' if cid in r['new_constraints'] else ''})\n")
    chosen, rejected = Text(), Text()
    for op, a, b in word_diff(r["chosen"][0]["content"], r["rejected"][0]["content"]):
        chosen.append(a, style=None if op == "equal" else "bold green underline")
        rejected.append(b, style=None if op == "equal" else "bold red strike")
    body = Text()
    body.append("prompt\n", style="bold").append(r["prompt"][0]["content"] + "\n\n")
    body.append("constraints\n", style="bold").append_text(cons)
    body.append("\nchosen", style="bold green").append(f"  ({r['chosen_model']})\n").append_text(chosen).append("\n\n")
    body.append("rejected", style="bold red").append(f"  ({r['rejected_model']})\n").append_text(rejected)
    title = f"{r['strategy']} · round {r['round']} · difficulty {r['difficulty']:.2f} · {r['id'][:12]}"
    return Panel(body, title=title, title_align="left")


def _chain_panel(h: dict[str, Any]) -> Any:
    from rich.panel import Panel

    from ecd.diagnosis import word_diff

    previous = h["root"]["instruction"]["text"]
    body = Text()
    body.append("seed\n", style="bold").append(previous + "\n")
    for r in h["rounds"]:
        step = r["step"]
        if step is None:
            body.append(f"\nround {r['round']}: ", style="bold").append(
                f"eliminated ({r['attempt']['eliminated'] or 'no verified answer'})\n", style="red")
            continue
        body.append(f"\nround {r['round']}: ", style="bold").append(f"{step['instruction']['operation']}\n")
        for op, a, _ in word_diff(step["instruction"]["text"], previous):
            body.append(a, style=None if op == "equal" else "bold green underline")
        previous = step["instruction"]["text"]
        body.append(f"\n  added: {', '.join(step['new_constraints'])}\n", style="green")
    return Panel(body, title=h["chain"], title_align="left")


@app.command("publish")
@report_errors
def publish_cmd(
    repo_id: str = typer.Argument(..., help="owner/name of the Hub dataset repository"),
    pairs_dir: Path = typer.Option(layout.PAIRS, "--pairs", help="the pair stage's folder"),
    public: bool = typer.Option(False, "--public", help="make a new repository public (default: private)"),
    token_env: str = typer.Option("HF_TOKEN", help="the environment variable that holds the Hub token"),
) -> None:
    """Push the pairs and their card to the Hugging Face Hub as a dataset."""
    from ecd.hub import publish

    url = publish(pairs_dir, repo_id, private=not public, token_env=token_env)
    out.print(f"published {pairs_dir} to {url}")


@app.command("timings")
@report_errors
def timings_cmd(all_runs: bool = typer.Option(False, "--all", help="every recorded run, not the latest per stage")) -> None:
    """Wall-clock time of each stage and training run on this machine (kept out of DVC's outputs)."""
    from ecd.records import read_jsonl

    path = layout.timings_path()
    if not path.exists():
        raise EcdError(f"no timings recorded in {path}: nothing has run on this machine yet (stages that DVC "
                       "restored from its cache or run-cache ran nowhere here, so they have no time)")
    rows = read_jsonl(path)
    if not all_runs:
        rows = list({r["label"]: r for r in rows}.values())
    table = Table(title=f"timings ({path})")
    table.add_column("stage or step")
    table.add_column("seconds", justify="right")
    for r in rows:
        table.add_row(str(r.get("label")), f"{float(r.get('seconds', 0)):.1f}")
    out.print(table)


@app.command("check-params")
@report_errors
def check_params(path: Path = typer.Argument(Path("params.yaml"))) -> None:
    """Validate a params file without running anything."""
    from ecd.params import load_params

    load_params(path)
    out.print(f"{path}: ok")


@cache_app.command("stats")
@report_errors
def cache_stats(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Entries, hits, misses and bytes of the last cached run and of the whole cache."""
    from ecd.cache import CallCache

    cache = CallCache()
    stats = cache.summary()
    if as_json:
        print(json.dumps(stats))
        return
    table = Table(title=f"call cache {cache.path}")
    for col in ("", "entries", "hits", "misses", "bytes"):
        table.add_column(col, justify="right")
    for name, row in (("last run", stats["last_run"]), ("total", stats["total"])):
        table.add_row(name, *(f"{row[k]:,}" for k in ("entries", "hits", "misses", "bytes")))
    out.print(table)


@cache_app.command("clear")
@report_errors
def cache_clear() -> None:
    """Delete the call cache (whole or damaged): every call is computed again."""
    from ecd.cache import cache_dir, remove

    gone = remove()
    out.print(f"call cache cleared ({', '.join(p.name for p in gone)} deleted)" if gone
              else f"no call cache at {cache_dir() / 'calls.sqlite'}")


@cache_app.command("check")
@report_errors
def cache_check(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Whether the call cache is whole: the file, and every entry. Exit status 1 when damaged."""
    from ecd.cache import check

    report = check()
    if as_json:
        print(json.dumps(report))
    elif report["problem"]:
        out.print(f"damaged: {report['path']}: {report['problem']} (the next stage moves it aside and starts "
                  "afresh; `ecd cache clear` deletes it)")
    elif report["damaged_entries"]:
        out.print(f"damaged: {report['damaged_entries']} of {report['entries']:,} entries in {report['path']} do not "
                  "parse (the next stage drops them and computes them again)")
    else:
        out.print(f"ok: {report['entries']:,} entries in {report['path']}")
    if not report["ok"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
