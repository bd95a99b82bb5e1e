"""`ecd ifeval`: IFEval's input and response formats in, its result files and a summary out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import ROOT, VENV_BIN

INPUT = [
    {"key": 1, "prompt": "Say hi without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    {"key": 2, "prompt": "Two bullets, quoted.",
     "instruction_id_list": ["detectable_format:number_bullet_lists", "startend:quotation"],
     "kwargs": [{"num_bullets": 2}, {}]},
    {"key": 3, "prompt": "End politely.", "instruction_id_list": ["startend:end_checker"],
     "kwargs": [{"end_phrase": "Any other questions?", "num_words": None}]},
]
RESPONSES = [
    {"prompt": "Say hi without commas.", "response": "Hi there friend"},
    {"prompt": "Two bullets, quoted.", "response": "Here you go:\n* one\n* two"},
    {"prompt": "End politely.", "response": "Done, any other questions?"},
    {"prompt": "A prompt nobody asked", "response": "ignored"},
]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(VENV_BIN) / "ecd"), "ifeval", *args], capture_output=True, text=True, cwd=tmp_path)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_and_writes_official_files(tmp_path: Path) -> None:
    inp, resp = write(tmp_path / "in.jsonl", INPUT), write(tmp_path / "resp.jsonl", RESPONSES)
    proc = run(tmp_path, "--input", str(inp), "--responses", str(resp), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    # strict: prompt 1 passes; prompt 2 has no quotes (bullets pass); prompt 3 passes
    assert summary == {
        "prompt_strict": 2 / 3, "inst_strict": 3 / 4,
        # loose drops the first line of prompt 2: still not quoted
        "prompt_loose": 2 / 3, "inst_loose": 3 / 4,
        "n_prompts": 3, "n_instructions": 4,
    }
    strict = [json.loads(line) for line in (tmp_path / "out/eval_results_strict.jsonl").read_text().splitlines()]
    assert list(strict[1]) == ["instruction_id_list", "prompt", "response", "follow_all_instructions",
                               "follow_instruction_list"]
    assert strict[1]["follow_instruction_list"] == [True, False] and not strict[1]["follow_all_instructions"]
    assert (tmp_path / "out/eval_results_loose.jsonl").exists()


def test_missing_response_names_the_key(tmp_path: Path) -> None:
    inp, resp = write(tmp_path / "in.jsonl", INPUT), write(tmp_path / "resp.jsonl", RESPONSES[:2])
    proc = run(tmp_path, "--input", str(inp), "--responses", str(resp), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {resp}: no response for the prompt with key 3"
    assert not (tmp_path / "out").exists()


def test_unknown_instruction_names_line(tmp_path: Path) -> None:
    bad = [{**INPUT[0], "instruction_id_list": ["punctuation:no_coma"]}]
    inp, resp = write(tmp_path / "in.jsonl", bad), write(tmp_path / "resp.jsonl", RESPONSES)
    proc = run(tmp_path, "--input", str(inp), "--responses", str(resp), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "in.jsonl:1: unknown constraint type 'punctuation:no_coma' (did you mean 'punctuation:no_comma'?)" in proc.stderr


def test_default_input_is_the_541_shipped_prompts(tmp_path: Path) -> None:
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "data/ifeval/input_data.jsonl").read_text().splitlines()]
    resp = write(tmp_path / "resp.jsonl", [{"prompt": p, "response": p} for p in prompts])
    proc = run(tmp_path, "--responses", str(resp), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_prompts"] == 541 and summary["n_instructions"] == 834
    assert 0 < summary["prompt_strict"] <= summary["prompt_loose"] < 1
