"""Params are validated before any work: one line naming the key, exit 2, nothing written."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT, make_project
from ecd.errors import EcdError
from ecd.params import Params, load_params, validate_params


def test_defaults_match_committed_params() -> None:
    assert load_params(ROOT / "params.yaml").round_names == ["r0", "r1", "r2", "r3"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"evolve": {"chain_per_seed": 3}}, "unknown key 'evolve.chain_per_seed' (did you mean 'evolve.chains_per_seed'?)"),
        ({"evolv": {}}, "unknown key 'evolv' (did you mean 'evolve'?)"),
        ({"train": {"dpo": {"betta": 0.1}}}, "unknown key 'train.dpo.betta' (did you mean 'train.dpo.beta'?)"),
        ({"evolve": {"chains_per_seed": "many"}}, "evolve.chains_per_seed: Input should be a valid integer"),
        ({"train": {"dpo": {"loss_type": ["slic"]}}}, "unknown loss 'slic'"),
        ({"teacher": {"backend": "transformers"}}, "needs a model"),
        ({"evolve": {"types": ["punctuation:no_coma"]}}, "did you mean 'punctuation:no_comma'?"),
        ({"rounds": {"r1": {"prev": "r0"}, "r3": {"prev": "r1"}}}, "rounds must be r1: {prev: r0}"),
        ({"seed": {"limit": 3}}, "unknown key 'seed' (it was renamed: the seed instructions are the seeds section"),
        ({"train": {"grpo": {"enabled": False}}}, "evaluate.students lists grpo but train.grpo.enabled is false"),
        ({"evaluate": {"students": ["preferance"]}}, "evaluate.students.0: Input should be 'base', 'sft'"),
    ],
)
def test_bad_params_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(EcdError) as info:
        validate_params(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_loss_error_lists_valid_choices() -> None:
    with pytest.raises(EcdError, match="valid: sigmoid, hinge, ipo"):
        validate_params({"train": {"dpo": {"loss_type": ["sigmoid", "kto_pair"]}}})


def test_params_are_frozen() -> None:
    p = Params()
    with pytest.raises(Exception):
        p.evolve.seed = 3  # type: ignore[misc]


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "proj")


def _stage(project, *args):
    return project.run(sys.executable, *args, check=False)


def test_stage_stops_on_misspelled_key(project) -> None:
    project.params({"evolve": {"chain_per_seed": 3}})
    proc = _stage(project, "stages/seeds.py")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: params.yaml: unknown key 'evolve.chain_per_seed' (did you mean 'evolve.chains_per_seed'?)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list((project.path / "data/rounds").rglob("*.jsonl"))


def test_stage_names_missing_seed_file(project) -> None:
    project.params({"seeds": {"source": "data/nope.jsonl"}})
    proc = _stage(project, "stages/seeds.py")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: seed file not found: data/nope.jsonl (params seeds.source)"
    assert not list((project.path / "data/rounds").rglob("*.jsonl"))


def test_malformed_seed_line_names_file_and_line(project) -> None:
    bad = project.path / "data/bad.jsonl"
    good = json.dumps({"id": "a", "name": "a", "instruction": "Say hi.", "instances": [{"input": "", "output": "Hi."}]})
    bad.write_text(good + "\n" + good.replace('"a"', '"b"') + "\n{not json\n")
    project.params({"seeds": {"source": "data/bad.jsonl"}})
    proc = _stage(project, "stages/seeds.py")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: data/bad.jsonl:3: malformed JSON")
    assert "Traceback" not in proc.stderr
    assert not list((project.path / "data/rounds").rglob("*.jsonl"))


def test_missing_field_names_file_and_line(project) -> None:
    bad = project.path / "data/bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "prompt": "Say hi."}) + "\n")
    project.params({"seeds": {"source": "data/bad.jsonl"}})
    proc = _stage(project, "stages/seeds.py")
    assert proc.stderr.strip() == "error: data/bad.jsonl:1: missing field 'instruction' (params seed)"


def test_unknown_round_is_named(project) -> None:
    proc = _stage(project, "stages/evolve.py", "r9")
    assert proc.returncode == 2
    assert "round 'r9' is not in params.yaml rounds (r0, r1, r2, r3)" in proc.stderr


def test_check_params_command(project) -> None:
    project.params({"split": {"test_fracton": 0.1}})
    proc = project.run("ecd", "check-params", check=False)
    assert proc.returncode == 2
    assert "did you mean 'split.test_fraction'?" in proc.stderr


def test_schedules_match_transformers_and_are_checked() -> None:
    from transformers import SchedulerType

    from ecd.params import LR_SCHEDULERS

    assert set(LR_SCHEDULERS) == {e.value for e in SchedulerType}
    with pytest.raises(EcdError, match="unknown schedule 'cosin' \\(did you mean 'cosine'\\?\\)"):
        validate_params({"train": {"sft": {"lr_scheduler": "cosin"}}})
    with pytest.raises(EcdError, match="train.dpo.lr_scheduler"):
        validate_params({"train": {"dpo": {"lr_scheduler": "linar"}}})


def test_pair_strategy_and_judge_are_checked() -> None:
    with pytest.raises(EcdError, match="unknown strategy 'hard'; valid: ecd, random, model_gap"):
        validate_params({"pair": {"strategy": "hard"}})
    assert validate_params({"pair": {"strategy": "random"}}).pair.strategy == ["random"]
    with pytest.raises(EcdError, match="the judge must be a model"):
        validate_params({"judge": {"backend": "programmatic"}})


def test_the_schema_defaults_are_the_shipped_params_yaml() -> None:
    """One source of truth: params.yaml states every default of the schema, and no other value."""
    import yaml

    from ecd.params import Params

    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert validate_params(shipped) == Params(), "params.yaml and the defaults in ecd/params.py differ"

    def keys(model: object, prefix: str = "") -> set[str]:
        from pydantic import BaseModel

        out = set()
        for name, value in model:  # a pydantic model iterates as (field, value)
            if isinstance(value, BaseModel) and name != "weak":
                out |= keys(value, f"{prefix}{name}.")
            else:
                out.add(f"{prefix}{name}")
        return out

    def yaml_keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("rounds", "op_weights", "reward_weights", "weak", "models"):
                out |= yaml_keys(v, f"{prefix}{k}.")
            else:
                out.add(f"{prefix}{k}")
        return out

    # every knob of the stages' sections is written out (the model settings of teacher and weak list
    # what a user sets; their other keys keep the schema's documented defaults)
    missing = {k for k in keys(Params()) - yaml_keys(shipped) if not k.startswith(("teacher.", "judge"))}
    assert not missing, f"params.yaml does not state: {sorted(missing)}"
