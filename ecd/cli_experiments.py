"""``ecd grid``, ``ecd study`` and ``ecd profile``: the commands that run and read DVC experiments
(``ecd.cli`` adds them to the ``ecd`` command)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ecd.errors import EcdError, report_errors
from ecd.uncertainty import bootstrap_settings

out = Console()


def _ints(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``; an empty text is no numbers."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise EcdError(f"expected comma-separated whole numbers, got {text!r}") from None


grid_app = typer.Typer(help="The experiment grid: pair strategy x loss x seed, as DVC experiments.", no_args_is_help=True)


@grid_app.command("queue")
@report_errors
def grid_queue(
    strategies: str = typer.Option("ecd,random,model_gap", help="comma-separated pair strategies"),
    losses: str = typer.Option("dpo,rpo,slic,ipo", help="comma-separated: dpo, rpo, slic, ipo"),
    random_seeds: str = typer.Option("0,1,2", "--random-seeds", "--seeds",
                                     help="comma-separated random seeds, each set as train.seed, student.seed and pair.seed"),
    set_: list[str] = typer.Option([], "--set", "-S", help="extra params for every experiment, as dvc's -S"),
) -> None:
    """Queue one `dvc exp run --queue` per cell and random seed; run them with `dvc queue start`."""
    from ecd.grid import queue

    names = queue(strategies.split(","), losses.split(","), _ints(random_seeds), set_)
    out.print(f"queued {len(names)} experiments; run them with `dvc queue start` and follow with `dvc queue status`")


@grid_app.command("summary")
@report_errors
def grid_summary(
    metric: str = typer.Option("heldout.prompt_strict", help="the metric, under each model in metrics/evaluate.json"),
    exp_json: Path = typer.Option(None, "--json", help="read `dvc exp show --json` output from this file"),
    runs: bool = typer.Option(False, "--runs", help="also list every finished experiment"),
) -> None:
    """Mean and spread over seeds per cell, beside the SFT-only control, as Markdown."""
    from ecd.grid import exp_rows, exp_show, markdown, runs_markdown, summarise

    show = json.loads(exp_json.read_text()) if exp_json else exp_show()
    rows = exp_rows(show)
    summary = summarise(rows, metric)
    if not summary:
        raise EcdError("no finished grid experiments (named strategy-loss-sN) found in `dvc exp show`")
    print(markdown(summary, metric))
    if runs:
        print()
        print(runs_markdown(rows, metric))


@grid_app.command("compare")
@report_errors
def grid_compare(
    first: str = typer.Argument(..., help="a grid cell, strategy-loss (e.g. ecd-rpo)"),
    second: str = typer.Argument(..., help="the cell it is compared with (e.g. random-rpo)"),
    sets: str = typer.Option("ifeval:strict,heldout:strict,ifbench:loose", help="set:strict|loose, comma-separated"),
) -> None:
    """FIRST's preference-trained student minus SECOND's, seed by seed over the prompts both answered,
    with a 95 % interval over prompts and seeds: which way of building pairs made the better student."""
    from ecd.grid import compare_cells, exp_rows, exp_show
    from ecd.seed_runs import read_verdicts

    resamples, seed = bootstrap_settings()
    rows = exp_rows(exp_show())
    for item in sets.split(","):
        set_name, _, mode = item.partition(":")
        try:
            r = compare_cells(rows, first, second, read_verdicts, set_name, mode or "strict", resamples, seed)
        except EcdError as exc:
            out.print(f"{set_name}: {exc}", markup=False)
            continue
        out.print(f"{set_name} prompt-level {mode or 'strict'}: {first} − {second} {r['delta']:+.3f} "
                  f"[{r['lo']:+.3f}, {r['hi']:+.3f}] over seeds {', '.join(r['seeds'])} (seeds' sd {r['seed_sd']:.3f})",
                  markup=False)


study_app = typer.Typer(help="The study: every pair strategy against the SFT-only control and ECD, matched rows, "
                        "seeds pooled, IFEval, IFBench and held-out instructions.", no_args_is_help=True)


@study_app.command("run")
@report_errors
def study_run(
    profile: str = typer.Argument("smollm2", help="the params profile the study runs under (profiles/NAME.yaml)"),
    random_seeds: str = typer.Option("0,1,2", "--random-seeds", "--seeds", help="comma-separated random seeds"),
    strategies: str = typer.Option("ecd,random,model_gap", help="comma-separated pair strategies (ecd first)"),
    set_: list[str] = typer.Option([], "--set", "-S", help="extra params for every experiment, as dvc's -S"),
    guard_ablation: str = typer.Option("0", help="comma-separated seeds that also run GRPO without its task guard "
                                                 "('' for none)"),
    grpo: bool = typer.Option(True, "--grpo/--no-grpo", help="run the GRPO arms (--no-grpo: the pair strategies' "
                                                             "arms alone, GRPO in a later call)"),
) -> None:
    """Run every experiment of the study that has not finished, one at a time (resumable: stop it
    any time; finished runs, DVC's run-cache and the call cache carry over), and write each finished
    run's record in docs/study/PROFILE/ (its per-prompt verdicts: commit them to keep the evidence)."""
    from ecd.study import run

    ran = run(profile, _ints(random_seeds), strategies.split(","), set_, _ints(guard_ablation), grpo=grpo)
    done = "the study is complete" if grpo else "its pair strategies' arms are complete (GRPO: without --no-grpo)"
    out.print(f"study: {len(ran)} experiments run; {done}: `ecd study report {profile}`")


@study_app.command("record")
@report_errors
def study_record(profile: str = typer.Argument("smollm2", help="the study's profile")) -> None:
    """Write the record of every finished DVC experiment of the study (``ecd study run`` does this
    after each run): docs/study/PROFILE/NAME.jsonl, the per-prompt verdicts the report reads when
    the experiment and its cache are not there (another machine, a fresh clone)."""
    from ecd.grid import exp_rows, exp_show
    from ecd.study import finished, record

    done = {n: r for n, r in finished(exp_rows(exp_show())).items() if n.startswith(f"{profile}-") and "-rpo-s" in n}
    if not done:
        raise EcdError(f"no finished experiment of a {profile} study to record")
    for name in sorted(done):
        out.print(f"recorded {name}: {record(profile, done[name])}")


@study_app.command("report")
@report_errors
def study_report(
    profile: str = typer.Argument("smollm2", help="the study's profile"),
    out_dir: Path = typer.Option(None, "--out", help="also write study.md and the chart (SVG, PNG) here"),
    random_seeds: str = typer.Option("", "--seeds", help="comma-separated seeds to read (default: every finished one)"),
) -> None:
    """Each arm's scores and each difference with its 95 % interval over prompts and seeds and its
    minimum detectable effect, as Markdown; with --out, the chart too. Runs are read from DVC's
    experiments and, for runs not among them, from their records in docs/study/PROFILE/; --seeds
    reads only those seeds' runs (one seed's own figures, or a subset pooled)."""
    from ecd.charts import render
    from ecd.records import write_text
    from ecd.study import seed_of, study_rows, summarise
    from ecd.study_report import chart, markdown

    resamples, seed = bootstrap_settings()
    rows = study_rows(profile)
    if random_seeds:
        wanted = set(_ints(random_seeds))
        rows = [r for r in rows if seed_of(str(r["name"])) in wanted]
    study = summarise(rows, profile, resamples=resamples, seed=seed)
    text = markdown(study)
    print(text)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "study.md", text + "\n")
        for path in render([chart(study)], out_dir):
            out.print(f"wrote {path}")


@study_app.command("why")
@report_errors
def study_why(
    profile: str = typer.Argument("smollm2", help="the study's profile"),
    seed: int = typer.Option(0, "--seed", help="the seed whose runs are read"),
    set_name: str = typer.Option("ifeval", "--set", help="the evaluation set of the per-type table"),
) -> None:
    """What the seed's pairs are made of, per strategy (do ECD's rejected answers miss only what was
    added? does one type dominate?), every arm's instruction-level strict score by constraint type, and
    GRPO's rewards on every arm's held-out answers with the answers its guard scores lowest, and with
    the guard's ablation finished, GRPO-without-guard's lowest-guard answers beside GRPO's."""
    from ecd.diagnosis import (anatomy_markdown, pair_anatomy, read_pairs_at, reward_markdown, reward_view, type_markdown,
                               type_scores)
    from ecd.grid import exp_rows, exp_show
    from ecd.seed_runs import read_records_at
    from ecd.study import ARMS, PAIR_STRATEGIES, arm_source, finished, run_name, runs_of_seed

    runs = runs_of_seed(finished(exp_rows(exp_show())), profile, seed)
    if "ecd" not in runs:
        raise EcdError(f"no finished run {run_name(profile, 'ecd', seed)}: run `ecd study run {profile}` first")
    pairs = [p for s, r in runs.items() if s in PAIR_STRATEGIES for p in read_pairs_at(str(r["rev"]))]  # GRPO: ECD's pairs
    print(anatomy_markdown(pair_anatomy(pairs)))
    print()
    sources = {a: src for a in ARMS if (src := arm_source(runs, a)) is not None}
    arms = list(sources)
    records = {a: read_records_at(str(run["rev"]), student, set_name) for a, (run, student) in sources.items()}
    trained = {t for p in pairs for t in p["instruction_id_list"]}
    print(type_markdown(type_scores(records), arms, trained))
    print()
    ecd_rev = str(runs["ecd"]["rev"])
    held = {a: read_records_at(str(run["rev"]), student, "heldout") for a, (run, student) in sources.items()}
    print("GRPO's rewards on the held-out answers (the test pair's chosen answer as the guard's reference):\n")
    view = reward_view(held, read_pairs_at(ecd_rev, "test"))
    print(reward_markdown(view, held))
    if "grpo_noguard" in view:
        print("\nWhat the guard changed: GRPO without it, its answers that meet every check and keep least of the task, "
              "beside GRPO's:")
        print(reward_markdown(view, held, focus="grpo_noguard", beside="grpo", table=False))


profile_app = typer.Typer(help="Named params profiles (profiles/NAME.yaml): values over params.yaml.",
                          no_args_is_help=True)


@profile_app.command("list")
@report_errors
def profile_list() -> None:
    """Every profile in profiles/: what it runs, and bounds on its model calls, tokens and training
    steps computed from its params (``ecd.profiles.estimate``: estimates, not measurements)."""
    from rich.table import Table
    from rich.text import Text

    from ecd.profiles import PROFILES, description, estimate, merged

    def n(x: object) -> str:
        return "?" if x is None else f"{x:,}" if isinstance(x, int) else str(x)

    table = Table(title="profiles (ecd profile run NAME); calls and tokens are upper-bound estimates from params")
    for h in ("profile", "what it runs", "seeds", "teacher calls", "teacher tokens in / out", "judge calls",
              "weak calls", "eval answers", "preference steps", "GRPO tokens out"):
        table.add_column(h, overflow="fold")
    for path in sorted(PROFILES.glob("*.yaml")):
        e = estimate(merged(path.stem))
        if e["seeds"] is None:
            cells = ["?"] * 8
        else:
            tokens = "code" if e["teacher_is_code"] else f"{n(e['teacher_prompt_tokens'])} / {n(e['teacher_completion_tokens'])}"
            steps = n(e["preference_steps"]) + (f" ×{e['processes']} proc" if e["processes"] > 1 else "")
            cells = [n(e["seeds"]), n(e["teacher_calls"]), tokens, n(e["judge_calls"]), n(e["weak_calls"]),
                     n(e["eval_answers"]), steps, n(e["grpo_completion_tokens"])]
        table.add_row(path.stem, Text(description(path.stem)), *cells)
    out.print(table)


@profile_app.command("show")
@report_errors
def profile_show(name: str = typer.Argument(..., help="a profile in profiles/, e.g. smollm2")) -> None:
    """Print the params the profile gives (params.yaml with the profile's values over it), validated."""
    import yaml

    from ecd.profiles import merged

    print(yaml.safe_dump(merged(name), sort_keys=False), end="")


@profile_app.command("run")
@report_errors
def profile_run(
    name: str = typer.Argument(..., help="a profile in profiles/, e.g. smollm2"),
    set_: list[str] = typer.Option([], "--set", "-S", help="more params on top, as dvc's -S"),
    exp_name: str = typer.Option(None, "--name", "-n", help="the experiment's name (default: the profile's)"),
    targets: list[str] = typer.Option([], "--target", help="only these stages and what they need (default: all)"),
) -> None:
    """Run the profile as one DVC experiment: params.yaml is the profile's for the run, then restored."""
    from ecd.profiles import run

    raise typer.Exit(run(name, exp_name or name, set_, targets))


