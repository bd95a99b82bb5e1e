"""The pair and chain viewer (``ecd inspect --html``) on a real run whose seeds carry hostile markup,
opened in headless Chromium: model text shows as text and runs nothing; the filters work."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Project, make_project

#: seed instructions and reference answers (the programmatic teacher's answers are rewrites of the
#: reference) holding markup that would break out of the page, or run, if it were not escaped
HOSTILE = [
    ("Explain what this snippet does: <script>document.title='pwned'</script>",
     "It sets the title.</div></section><script>document.title='pwned'</script> That is all."),
    ("Describe the image tag below.\n<img src=x onerror=\"document.title='pwned'\">",
     "An image whose onerror handler runs <img src=x onerror=\"document.title='pwned'\"> code."),
    ("Close every element: </div></section></body> and say what remains",
     "Nothing remains </pre></div><b>bold</b> after the closing tags, all of them closed in order."),
    ("Summarise the text in one sentence: cats sleep most of the day and hunt at night.",
     "Cats sleep by day and hunt by night, & they like <em>quiet</em> places."),
    ("Write a short note to a friend about the weather today and tomorrow.",
     "Dear friend, today is sunny and warm, tomorrow brings rain <!-- a comment --> and wind."),
    ("List three fruits that are red and say which one you like best.",
     "Strawberries, cherries and raspberries; I like cherries best of all the red fruits."),
]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=5000"]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Project:
    """The data half and the pairs of the real pipeline (``dvc repro pair``, programmatic teacher) on
    the hostile seeds: every record the viewer shows was written by the stages."""
    project = make_project(tmp_path_factory.mktemp("viewer") / "project", {
        "pair": {"strategy": ["ecd", "random"], "match": []}, "split": {"test_fraction": 0.0}})
    seeds = [{"id": f"hostile_{i}", "name": f"hostile_{i}", "instruction": text, "is_classification": False,
              "instances": [{"input": "", "output": answer}]} for i, (text, answer) in enumerate(HOSTILE)]
    (project.path / "data/self-instruct/seed_tasks.jsonl").write_text("".join(json.dumps(s) + "\n" for s in seeds))
    project.commit("hostile seeds")
    project.run("dvc", "repro", "pair", timeout=1200)
    return project


def _chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it: apt-get install chromium)")
    return chromium


def _dom(page: Path, query: str, profile: Path) -> str:
    return subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri() + query],
                          capture_output=True, text=True, timeout=180).stdout


def _shown(dom: str) -> tuple[int, int]:
    items = re.findall(r'<section class="item"[^>]*>', dom)
    return sum(" hidden" not in i for i in items), len(items)


def test_pairs_page_shows_model_text_as_text_and_filters(hostile_run: Project, tmp_path: Path) -> None:
    page = hostile_run.path / "pairs.html"
    printed = " ".join(hostile_run.run("ecd", "inspect", "--html", str(page)).stdout.split())
    source = page.read_text()
    n_pairs = source.count('<section class="item"')
    assert n_pairs >= 4 and f"{n_pairs} of {n_pairs} train pairs" in printed, printed
    assert "<script>document.title" not in source and "&lt;script&gt;document.title=&#x27;pwned&#x27;" in source
    assert source.count("<script>") == 1  # the page's own filter script, nothing else

    dom = _dom(page, "", tmp_path / "p0")
    assert "<title>train pairs of" in dom and "pwned</title>" not in dom, "model text ran"
    assert _shown(dom) == (n_pairs, n_pairs) and f"{n_pairs} of {n_pairs} shown" in dom
    assert "&lt;/div&gt;&lt;/section&gt;" in dom  # the closing tags are characters inside the answer
    assert dom.count("<ins>") + dom.count("<del>") >= n_pairs, "no difference was marked"

    strategies = {s: source.count(f'data-strategy="{s}"') for s in ("ecd", "random")}
    assert all(strategies.values()), strategies
    for strategy, count in strategies.items():
        dom = _dom(page, f"?strategy={strategy}", tmp_path / f"p-{strategy}")
        assert _shown(dom) == (count, n_pairs) and "pwned</title>" not in dom


def test_chain_page_shows_each_round_and_filters_by_type(hostile_run: Project, tmp_path: Path) -> None:
    page = hostile_run.path / "chains.html"
    printed = " ".join(hostile_run.run("ecd", "inspect", "data/rounds/r2", "--html", str(page)).stdout.split())
    chains = (hostile_run.path / "data/rounds/r2/chains.jsonl").read_text().count("\n")
    assert f"{chains} of {chains} chains of data/rounds/r2" in printed, printed
    source = page.read_text()
    assert source.count('<section class="item"') == chains and source.count("<script>") == 1
    assert "round 1: " in source and "round 2: " in source
    dom = _dom(page, "", tmp_path / "c0")
    assert "pwned</title>" not in dom and _shown(dom) == (chains, chains)
    assert "&lt;img src=x onerror=" in dom

    types = re.findall(r'<option value="([^"]+)">', source.split('data-filter="type"')[1].split("</select>")[0])
    one = types[0]
    expected = sum(one in m.split() for m in re.findall(r'data-type="([^"]*)"', source))
    dom = _dom(page, f"?type={one}", tmp_path / "c1")
    assert 0 < expected <= chains and _shown(dom) == (expected, chains)

    terminal = " ".join(hostile_run.run("ecd", "inspect", "data/rounds/r2", "--n", "2").stdout.split())
    assert "seed" in terminal and "round 1:" in terminal and f"2 of {chains} chains" in terminal
    seeds = hostile_run.run("ecd", "inspect", "data/rounds/r0", check=False)
    assert seeds.returncode == 2 and "holds the seeds (round 0)" in " ".join(seeds.stderr.split()), seeds.stderr
