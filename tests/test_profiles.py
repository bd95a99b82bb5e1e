"""Params profiles: the shipped ones validate, a misspelt name is named, and ``-S`` reaches DVC in
the form it accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, VENV_BIN, env
from ecd.errors import EcdError
from ecd.profiles import _dvc_set, merged


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml")))
def test_every_shipped_profile_validates(name: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    params = merged(name)
    over = yaml.safe_load((ROOT / "profiles" / f"{name}.yaml").read_text())
    assert all(k in params for k in over)


def test_a_misspelt_profile_is_named_with_the_closest(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(EcdError, match=r"no profile 'smolm2'.*smollm2"):
        merged("smolm2")


def test_set_on_a_key_the_params_leave_at_default_gets_dvcs_plus() -> None:
    params = {"teacher": {"backend": "openai", "model": "m"}, "seeds": {"limit": 24}}
    assert _dvc_set(params, "seeds.limit=4") == "seeds.limit=4"
    assert _dvc_set(params, "teacher.base_url=http://x/v1") == "+teacher.base_url=http://x/v1"
    assert _dvc_set(params, "+teacher.base_url=u") == "+teacher.base_url=u"
    assert _dvc_set(params, "judge.model=m") == "+judge.model=m"


def test_profile_show_prints_the_merged_params(tmp_path: Path) -> None:
    out = subprocess.run([str(Path(VENV_BIN) / "ecd"), "profile", "show", "smollm2"], cwd=ROOT,
                         env=env(tmp_path / "cache"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert shown["student"]["model"] == "models/pretrained/smollm2" and shown["train"]["lora"]["enabled"] is True


def test_profile_list_shows_every_profile_with_its_estimate(tmp_path: Path) -> None:
    out = subprocess.run([str(Path(VENV_BIN) / "ecd"), "profile", "list"], cwd=ROOT, capture_output=True, text=True,
                         env={**env(tmp_path / "cache"), "COLUMNS": "400"}, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    names = sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))
    assert sorted(rows) == names
    for name, cells in rows.items():
        assert cells[0] and "?" not in cells[1:3], (name, cells)  # a description, seeds and teacher calls known
    assert rows["gpu-full-8b"][7] == "1,250 ×8 proc"  # 20,000 pairs at 2 a GPU on 8 GPUs


def test_gpu_recipes_estimate_from_their_params(monkeypatch) -> None:
    """The recipes' bounds follow from their params: 5,000 seeds × 8 chains × 3 rounds, four answers
    per instruction, one evolution call per chain and round."""
    from ecd.profiles import estimate

    monkeypatch.chdir(ROOT)
    e = estimate(merged("gpu-vllm"))
    assert e["chains"] == 40_000 and e["teacher_calls"] == 5_000 * 4 + 3 * 40_000 * (1 + 4)
    assert e["weak_calls"] == 20_000 and e["preference_steps"] == 20_000 // 16 and e["judge_calls"] > 0
    assert estimate(merged("gpu-full-8b"))["processes"] == 8
