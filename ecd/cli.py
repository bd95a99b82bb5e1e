"""The ``ecd`` command: reports and maintenance around the DVC pipeline (which ``dvc repro`` runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ecd import layout
from ecd.errors import EcdError

app = typer.Typer(help="Evolutionary Contrastive Distillation as a DVC pipeline.", no_args_is_help=True)
cache_app = typer.Typer(help="The content-addressed call cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
out = Console()


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise typer.Exit(2)


METRIC_COLUMNS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")


@app.command()
def report(metrics: Path = typer.Option(layout.METRICS / "evaluate.json", help="the evaluate stage's metrics")) -> None:
    """Compare the students on the held-out instructions, with deltas against the SFT model."""
    if not metrics.exists():
        _fail(f"{metrics} not found: run `dvc repro` first")
    data = json.loads(metrics.read_text())
    ref = data.get("sft", {})
    table = Table(title=f"Held-out instruction following ({next(iter(data.values()))['n_prompts']} prompts)")
    table.add_column("model")
    for col in METRIC_COLUMNS:
        table.add_column(col, justify="right")
    for name, row in data.items():
        cells = []
        for col in METRIC_COLUMNS:
            cell = f"{row[col]:.3f}"
            if name != "sft" and col in ref:
                delta = row[col] - ref[col]
                cell += f" ({delta:+.3f})"
            cells.append(cell)
        table.add_row(name, *cells)
    out.print(table)
    out.print("deltas are against the SFT student; metrics: " + str(metrics))


@app.command("ifeval")
def ifeval_cmd(
    responses: Path = typer.Option(..., "--responses", help='JSONL of {"prompt", "response"}, IFEval\'s format'),
    output_dir: Path = typer.Option(..., "--output-dir", help="where eval_results_{strict,loose}.jsonl go"),
    input_path: Path = typer.Option(None, "--input", help="IFEval input JSONL (default: the 541 shipped prompts)"),
) -> None:
    """Score responses to IFEval prompts with IFEval's strict and loose rules; print a JSON summary."""
    from ecd.evaluation import IFEVAL_INPUT, ifeval

    try:
        summary = ifeval(input_path or IFEVAL_INPUT, responses, output_dir)
    except EcdError as exc:
        _fail(str(exc))
    print(json.dumps(summary, indent=2))


@app.command("constraints")
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
                rows.append((f"{branch}/{sub}", type_id, "IFEval" if t.ifeval else "ecd", how,
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
        table.add_row(*r)
    out.print(table)


@app.command("check-params")
def check_params(path: Path = typer.Argument(Path("params.yaml"))) -> None:
    """Validate a params file without running anything."""
    from ecd.params import load_params

    try:
        load_params(path)
    except EcdError as exc:
        _fail(str(exc))
    out.print(f"{path}: ok")


@cache_app.command("stats")
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
def cache_clear() -> None:
    """Empty the call cache."""
    from ecd.cache import CallCache

    CallCache().clear()
    out.print("call cache cleared")


if __name__ == "__main__":
    app()
