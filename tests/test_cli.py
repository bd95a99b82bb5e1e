"""The ``ecd`` command's data tools: ``inspect`` and ``publish`` (up to the Hub upload), and ``report``.

The Hub cannot be reached from here, so ``publish`` is tested against ``FakeHubApi``, a fake that
records the calls ``huggingface_hub.HfApi`` would receive. Everything before those calls (checking
the folder, reading the token from the environment) is the real code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecd.errors import EcdError
from ecd.hub import publish
from ecd.pairs import dataset_card, save_pairs
from ecd.params import PairParams, validate_params

from test_pairing import _ecd_steps, build_pairs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    train, test, metrics = build_pairs(_ecd_steps(), PairParams(strategy=["ecd", "random"]))
    out = tmp_path_factory.mktemp("pairs") / "pairs"
    save_pairs(out, train, test, dataset_card(train, test, metrics, validate_params({}), {}))
    return out


def ecd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecd.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_inspect_prints_pairs_with_their_missed_constraints(pairs_dir: Path) -> None:
    proc = ecd("inspect", str(pairs_dir), "--n", "3", "--strategy", "ecd")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("missed by rejected") >= 3
    assert "chosen" in proc.stdout and "rejected" in proc.stdout
    assert "3 of " in proc.stdout and "train pairs (ecd)" in proc.stdout
    missing = ecd("inspect", str(pairs_dir.parent / "nope"))
    assert missing.returncode == 2 and "input not found" in missing.stderr


def test_inspect_marks_what_differs_and_names_what_is_wrong(pairs_dir: Path) -> None:
    """The words that differ are underlined in the chosen answer and struck through in the rejected
    one; a sample says how many pairs it was drawn from; a wrong split or strategy is named."""
    import os

    colour = ecd("inspect", str(pairs_dir), "--n", "1", "--strategy", "ecd", env={**os.environ, "FORCE_COLOR": "1"})
    assert colour.returncode == 0, colour.stderr
    assert "\x1b[1;4;32m" in colour.stdout  # what R(t) added to R(t-1): bold underlined green
    sampled = ecd("inspect", str(pairs_dir), "--n", "2", "--seed", "3")
    total = int(__import__("re").search(r"2 of (\d+) train pairs", sampled.stdout).group(1))
    assert sampled.returncode == 0 and sampled.stdout.count("missed by rejected") >= 2 and total > 2
    assert "drawn with seed 3" in " ".join(sampled.stdout.split())
    split = ecd("inspect", str(pairs_dir), "--split", "validation")
    assert split.returncode == 2 and "--split 'validation': the pairs have a train and a test split" in split.stderr
    other = ecd("inspect", str(pairs_dir), "--strategy", "model_gap")
    assert other.returncode == 2 and "no model_gap pairs" in other.stderr and "its strategies: ecd, random" in other.stderr


def test_version_and_honest_timings(tmp_path: Path) -> None:
    import os

    from importlib.metadata import version

    assert ecd("--version").stdout.strip() == f"ecd {version('ecd')}"
    none = ecd("timings", env={**os.environ, "ECD_TIMINGS": str(tmp_path / "timings.jsonl")})
    assert none.returncode == 2 and "restored from its cache or run-cache ran nowhere here" in " ".join(none.stderr.split())


def test_constraint_descriptions_keep_their_square_brackets() -> None:
    proc = ecd("constraints", env={**__import__("os").environ, "COLUMNS": "400"})
    assert proc.returncode == 0 and "[name]" in proc.stdout.replace("\n", " ")


class FakeHubApi:
    """A fake of ``huggingface_hub.HfApi``: records ``create_repo`` and ``upload_folder`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id: str, **kw) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/datasets/{kw['repo_id']}/commit/0"})()


def test_publish_checks_the_folder_and_uploads_it_with_the_token(pairs_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("ECD_TEST_HF_TOKEN", "hf_secret")
    api = FakeHubApi()
    url = publish(pairs_dir, "me/ecd-pairs", token_env="ECD_TEST_HF_TOKEN", api=api)
    assert url == "https://huggingface.co/datasets/me/ecd-pairs/commit/0"
    (c_name, create), (u_name, upload) = api.calls
    assert (c_name, create["repo_type"], create["private"], create["token"]) == ("create_repo", "dataset", True, "hf_secret")
    assert u_name == "upload_folder" and upload["folder_path"] == str(pairs_dir)
    assert upload["repo_type"] == "dataset" and set(upload["allow_patterns"]) == {"train.parquet", "test.parquet", "README.md"}
    n_train = len(__import__("pyarrow.parquet").parquet.read_table(pairs_dir / "train.parquet"))
    assert f"{n_train} train" in upload["commit_message"]


def test_publish_refuses_without_token_or_data(pairs_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ECD_TEST_HF_TOKEN", raising=False)
    with pytest.raises(EcdError, match="set the environment variable ECD_TEST_HF_TOKEN"):
        publish(pairs_dir, "me/x", token_env="ECD_TEST_HF_TOKEN", api=FakeHubApi())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "README.md").write_text("x")
    with pytest.raises(EcdError, match="missing train.parquet, test.parquet"):
        publish(tmp_path / "half", "me/x", api=FakeHubApi())
    with pytest.raises(EcdError, match="expected 'owner/name'"):
        publish(pairs_dir, "noslash", api=FakeHubApi())


def test_report_shows_every_set_with_deltas_and_writes_markdown(tmp_path: Path) -> None:
    metrics = {m: {"heldout": {"prompt_strict": p, "inst_strict": p, "prompt_loose": p, "inst_loose": p,
                               "inst_strict_format": p, "n_prompts": 10}}
               for m, p in (("base", 0.0), ("sft", 0.3), ("control", 0.25), ("preference", 0.5))}
    path = tmp_path / "evaluate.json"
    path.write_text(json.dumps(metrics))
    proc = ecd("report", "--metrics", str(path), "--markdown", str(tmp_path / "r.md"), "--no-experiments")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "r.md").read_text()
    assert "| preference | 0.500 (+0.250) | 0.500 (+0.250) |" in md and "| sft | 0.300 (+0.050) |" in md
    assert "per category (strict)" in md and "| model | format |" in md and "| control | 0.250 |" in md
    assert "prompt_strict" in proc.stdout  # the terminal table's headers fit an 80-column terminal
    bad = ecd("report", "--metrics", str(path), "--baseline", "nope")
    assert bad.returncode == 2 and "no model 'nope'" in bad.stderr


def _exp(name: str, state: str, pref: float, control: float) -> dict:
    metrics = {m: {"heldout": {"prompt_strict": v}} for m, v in (("preference", pref), ("control", control), ("sft", 0.1))}
    return {"executor": {"state": state}, "name": name, "revs": [{"rev": name, "name": name, "data": {
        "params": {"params.yaml": {"data": {"train": {"seed": 0}}}},
        "metrics": {"metrics/evaluate.json": {"data": metrics}}}}]}


def test_grid_queue_names_and_summary_of_dvc_exp_show() -> None:
    from ecd.grid import experiments, exp_rows, markdown, summarise

    exps = experiments(["ecd", "random"], ["rpo", "ipo"], [0, 1, 2])
    assert len(exps) == 12 and exps[0][0] == "ecd-rpo-s0"
    assert "train.dpo.loss_type=[sigmoid,sft]" in exps[0][1] and "train.dpo.loss_weights=[1.0,1.0]" in exps[0][1]
    assert "pair.match=[ecd,random]" in exps[0][1] and "pair.match=[ecd,random]" in exps[-1][1]  # matched rows
    with pytest.raises(EcdError, match="valid: dpo, rpo, slic, ipo"):
        experiments(["ecd"], ["kto"], [0])
    show = [{"rev": "workspace", "name": None, "data": {}, "experiments": None},
            {"rev": "abc", "name": "main", "data": {}, "experiments": [
                _exp("ecd-rpo-s0", "success", 0.5, 0.2), _exp("ecd-rpo-s1", "success", 0.7, 0.4),
                _exp("ecd-rpo-s2", "success", 0.3, 0.35), _exp("ecd-ipo-s0", "running", 0.9, 0.2),
                _exp("ecd-ipo-s1", "queued", 0.9, 0.2)]}]
    summary = summarise(exp_rows(show))
    assert len(summary) == 1  # running and queued experiments are left out
    s = summary[0]
    assert (s["strategy"], s["loss"], s["seeds"], s["beats_control"]) == ("ecd", "rpo", 3, "2/3")
    assert s["mean"] == pytest.approx(0.5) and s["sd"] == pytest.approx(0.2)
    assert "| ecd | rpo | 3 | 0.500 ± 0.200 | 0.317 ± 0.104 | 2/3 |" in markdown(summary, "heldout.prompt_strict")


def test_study_report_reads_the_committed_records_and_one_seed_alone() -> None:
    """``ecd study report`` on the real study's records (docs/study/smollm2, committed): ``--seeds 2``
    gives seed 2's runs alone, the report ``summarise`` gives from those records."""
    from ecd.study import read_any, record_rows, seed_of, summarise
    from ecd.study_report import markdown
    from ecd.uncertainty import bootstrap_settings

    rows = [r for r in record_rows("smollm2", ROOT / "docs" / "study") if seed_of(str(r["name"])) == 2]
    assert rows, "the study's seed 2 records are committed in docs/study/smollm2"
    proc = ecd("study", "report", "smollm2", "--seeds", "2")
    assert proc.returncode == 0, proc.stderr
    resamples, seed = bootstrap_settings()
    assert proc.stdout.strip() == markdown(summarise(rows, "smollm2", read=read_any, resamples=resamples, seed=seed)).strip()
    assert "Seeds: 2." in proc.stdout
