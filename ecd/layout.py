"""Where every stage reads and writes: one place, so stages and tests agree on paths.

Paths are relative to the project root, where DVC runs the stages. The data shipped inside the
package (IFEval's prompts, Self-Instruct's evaluation set) is found from the package itself, so
``ecd ifeval`` works from any directory.
"""

from __future__ import annotations

from pathlib import Path

from ecd.errors import EcdError

DATA = Path("data")
ROUNDS = DATA / "rounds"
SPLIT = DATA / "split.json"
PAIRS = DATA / "pairs"
#: the SFT-only control's rows: each train pair's prompt and chosen answer, in the pairs' order
ROWS = DATA / "rows.parquet"
EVAL = DATA / "eval"
MODELS = Path("models")
#: pretrained models fetched by the ``model`` stage, one folder each
PRETRAINED = MODELS / "pretrained"
METRICS = Path("metrics")
PLOTS = Path("plots")
#: each training run's dvclive logs, ``dvclive/<run>`` (``ecd/tracking.py``)
LIVE = Path("dvclive")
WORK = Path(".ecd") / "work"
#: per-stage wall-clock times: outside DVC's outputs, so that the same run gives the same dvc.lock
TIMINGS = Path(".ecd") / "timings.jsonl"


def timings_path() -> Path:
    """``$ECD_TIMINGS`` or ``.ecd/timings.jsonl`` (an experiment run in a temporary copy writes to the project's)."""
    import os

    return Path(os.environ.get("ECD_TIMINGS", TIMINGS))

#: the students in the order every table lists them: untrained, SFT, SFT-only control, preference-trained
STUDENTS = ("base", "sft", "control", "preference", "grpo")

SHIPPED = Path(__file__).resolve().parents[1] / "data"
#: the 541 IFEval prompts (Apache-2.0, data/ifeval/LICENSE)
IFEVAL_INPUT = SHIPPED / "ifeval" / "input_data.jsonl"
IFEVAL_SHA256 = "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49"
#: IFBench's 294 test prompts, the original release (ODC-BY-1.0, data/ifbench/LICENSE)
IFBENCH_INPUT = SHIPPED / "ifbench" / "IFBench_test.jsonl"
IFBENCH_SHA256 = "11c3d683dcc7f4908a4d3cacd05c9a8bbd5484af2f8fde969e7abe2b8bad3e34"
#: Self-Instruct's 252 user-oriented instructions and text-davinci-003's answers (Apache-2.0,
#: data/self-instruct/LICENSE); their authors ask that they be used for evaluation only
USER_ORIENTED = SHIPPED / "self-instruct" / "user_oriented_instructions.jsonl"
DAVINCI_003 = SHIPPED / "self-instruct" / "text-davinci-003_predictions.jsonl"


def round_file(round_name: str, name: str) -> Path:
    """``data/rounds/<round>/<name>``: instructions, chains, responses, verdicts, state, steps."""
    return ROUNDS / round_name / name


def round_metrics(round_name: str, stage: str) -> Path:
    return METRICS / "rounds" / round_name / f"{stage}.json"


def stage_params(stage: str, dvc_yaml: Path = Path("dvc.yaml")) -> set[str]:
    """The params sections a stage reads (``train.dpo`` counts as ``train``), from ``dvc.yaml`` itself:
    the one place the list is stated."""
    import yaml

    try:
        spec = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"][stage]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise EcdError(f"{dvc_yaml}: cannot read the params of stage {stage!r} ({type(exc).__name__}: {exc})") from None
    return {str(p).split(".")[0] for p in spec.get("do", spec).get("params", [])}


def producer(path: str | Path, dvc_yaml: Path = Path("dvc.yaml"), params_yaml: Path = Path("params.yaml")
             ) -> str | None:
    """The name of the stage in ``dvc.yaml`` whose outputs hold ``path`` (``evolve@r2``), or None.

    Read from ``dvc.yaml`` itself (``foreach`` over the rounds in params.yaml expanded as DVC
    expands it), so that the answer cannot drift from the pipeline.
    """
    import yaml

    try:
        stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
        rounds = yaml.safe_load(params_yaml.read_text(encoding="utf-8")).get("rounds") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None
    target = Path(path).as_posix()
    for name, spec in stages.items():
        if "foreach" in spec:
            items = [(f"{name}@{key}", spec["do"], key, item) for key, item in rounds.items()]
        else:
            items = [(name, spec, None, None)]
        for full, body, key, item in items:
            for out in [*body.get("outs", []), *body.get("metrics", []), *body.get("plots", [])]:
                out_path = next(iter(out)) if isinstance(out, dict) else out
                if key is not None:
                    out_path = out_path.replace("${key}", key).replace("${item.prev}", str((item or {}).get("prev")))
                if target == out_path or target.startswith(out_path.rstrip("/") + "/"):
                    return full
    return None


def missing_input(path: str | Path) -> EcdError:
    """The error for an input that is not there: the path, and the stage that makes it."""
    return EcdError(f"input not found: {path}{_made_by(path)}")


def _made_by(path: str | Path) -> str:
    made_by = producer(path)
    return f" (made by stage {made_by}: run `dvc repro {made_by}`)" if made_by else ""


def looks_local(name: str) -> bool:
    """Whether a model name means a local directory rather than a hub id (``owner/name``): a path
    that starts with ``.``, ``/`` or ``~``, has more than one ``/``, lies under an existing folder
    (``models/base``) or is an output of a pipeline stage."""
    first = name.split("/", 1)[0]
    return (name.startswith((".", "/", "~")) or name.count("/") != 1 or Path(first).is_dir()
            or producer(name) is not None)


def check_model_path(name: str | None, what: str = "model") -> None:
    """Fail in one line on a local model directory that is missing or is not a model (rather than
    letting the hub client report a failed download); hub ids pass."""
    if not name:
        raise EcdError(f"{what} is not set: a hub id or a local model directory")
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise EcdError(f"{what} path {local} has no config.json: not a transformers model directory")
    elif looks_local(name):
        raise EcdError(f"{what} path does not exist: {name}{_made_by(name)}")
