"""IFBench: the shipped prompts, ``ecd ifbench``, conformance with the reference checker's verdicts
on the public sample responses, each checker on constructed passing and failing answers, and the
rule that evolution never draws these held-out types unless a param says so."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import VENV_BIN
from ecd import constraints as C
from ecd.errors import EcdError
from ecd.evaluation import BENCHMARKS, benchmark_prompts, read_ifeval_input
from ecd.params import EvolveParams, validate_params

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "fixtures" / "ifbench"


def ok(type_id: str, response: str, **kwargs) -> bool:
    return C.check(C.Constraint(type_id, kwargs), response)


def _ecd(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(VENV_BIN) / "ecd"), "ifbench", *args], capture_output=True, text=True, cwd=tmp_path)


def test_the_shipped_prompts_are_the_pinned_file(tmp_path: Path) -> None:
    prompts = benchmark_prompts("ifbench")
    assert len(prompts) == 294 and sum(len(p["instruction_id_list"]) for p in prompts) == 335
    changed = tmp_path / "IFBench_test.jsonl"
    changed.write_bytes(BENCHMARKS["ifbench"].input.read_bytes().replace(b"Write", b"write", 1))
    with pytest.raises(EcdError, match="sha256 .* is not the pinned"):
        read_ifeval_input(changed, BENCHMARKS["ifbench"].sha256)


def test_ecd_ifbench_agrees_with_the_reference_on_every_sample_verdict(tmp_path: Path) -> None:
    """The reference evaluator's verdicts on the public sample responses (upstream commit c94da02):
    all 335 instructions, strict and loose, and the summary its counts give."""
    proc = _ecd(tmp_path, "--responses", str(SAMPLE / "sample_output.jsonl"), "--output-dir", "out")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["n_prompts"], summary["n_instructions"]) == (294, 335)
    for mode, (prompts, instructions) in {"strict": (77, 93), "loose": (88, 109)}.items():
        ours = [json.loads(line) for line in (tmp_path / f"out/eval_results_{mode}.jsonl").read_text().splitlines()]
        ref = [json.loads(line) for line in (SAMPLE / f"sample_eval/eval_results_{mode}.jsonl").read_text().splitlines()]
        assert len(ours) == len(ref) == 294
        differ = [(r["instruction_id_list"], o["follow_instruction_list"], r["follow_instruction_list"])
                  for o, r in zip(ours, ref) if o["follow_instruction_list"] != r["follow_instruction_list"]]
        assert differ == []
        assert summary[f"prompt_{mode}"] == pytest.approx(prompts / 294)
        assert summary[f"inst_{mode}"] == pytest.approx(instructions / 335)


def test_reader_errors_name_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "responses.jsonl"
    bad.write_text('{"prompt": "x", "response": "y"}\n{"prompt": 3}\n')
    proc = _ecd(tmp_path, "--responses", str(bad), "--output-dir", "out")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {bad}:2: expected string fields 'prompt' and 'response'"
    short = tmp_path / "short.jsonl"
    short.write_text('{"prompt": "not an IFBench prompt", "response": "y"}\n')
    proc = _ecd(tmp_path, "--responses", str(short), "--output-dir", "out")
    assert proc.returncode == 2 and "no response for the prompt with key" in proc.stderr
    unknown = tmp_path / "input.jsonl"
    unknown.write_text(json.dumps({"key": 1, "prompt": "p", "instruction_id_list": ["count:numbrs"], "kwargs": [{}]}) + "\n")
    proc = _ecd(tmp_path, "--responses", str(short), "--output-dir", "out", "--input", str(unknown))
    assert proc.returncode == 2 and "did you mean 'count:numbers'" in proc.stderr


# ---------------------------------------------------------------------------------------------
# each checker on constructed answers: one that follows, one that does not


CASES: list[tuple[str, dict, str, str]] = [
    ("count:word_count_range", {"min_words": 3, "max_words": 4}, "one two three", "one two"),
    ("count:unique_word_count", {"N": 3}, "a b c", "a a b"),
    ("count:conjunctions", {"small_n": 2}, "tea and cake, but no milk", "tea and cake and milk"),
    ("count:person_names", {"N": 2}, "Emma met Liam.", "Emma met Bob."),
    ("count:numbers", {"N": 2}, "I have 3 cats and 12 dogs.", "I have 3 cats."),
    ("count:punctuation", {}, "Yes, really; see: wow! ok. Why? What?!", "Yes, really; see: wow! ok. Why?"),
    ("count:pronouns", {"N": 3}, "I told you about it.", "The cat sat."),
    ("count:keywords_multiple", {"keyword1": "a1", "keyword2": "b2", "keyword3": "c3", "keyword4": "d4", "keyword5": "e5"},
     "a1 " + "b2 " * 2 + "c3 " * 3 + "d4 " * 5 + "e5 " * 7, "a1 b2 c3 d4 e5"),
    ("count:words_japanese", {"N": 2}, "one 日本 three 語", "one two three four"),
    ("ratio:stop_words", {"percentage": 50}, "cats chase mice", "the cat and the dog"),
    ("ratio:sentence_type", {}, "It is. It was. Is it?", "It is. Is it?"),
    ("ratio:sentence_balance", {}, "It is. Is it? It is!", "It is. It was. Is it?"),
    ("ratio:sentence_words", {}, "Cats run. Dogs nap. Owls fly.", "Cats run. Dogs nap."),
    ("ratio:overlap", {"reference_text": "abcdef", "percentage": 25}, "abcxyz", "uvwxyz"),
    ("words:alphabet", {}, "Apples bake carefully", "Apples bake slowly"),
    ("words:vowel", {}, "a cat sat", "a cat sat\nin the sun"),
    ("words:consonants", {}, "strong black crisp", "strong idea"),
    ("words:palindrome", {}, "level racecar " + "rotor " * 8 + "kayak", "level racecar"),
    ("words:prime_lengths", {}, "to the house", "this is four"),
    ("words:start_verb", {}, "Write the letter now.", "The letter is here."),
    ("words:repeats", {"small_n": 2}, "go go stop", "go go go"),
    ("words:odd_even_syllables", {}, "cat hello dog", "cat dog"),
    ("words:last_first", {}, "I like cats. Cats like me.", "I like cats. Dogs like me."),
    ("words:paragraph_last_first", {}, "Time waits for no time\nRain falls on rain", "Time waits for nobody"),
    ("words:no_consecutive", {}, "big red apple", "big blue apple"),
    ("words:keywords_specific_position", {"keyword": "cat", "n": 2, "m": 2}, "Hi there. The cat sleeps.", "Hi. A dog."),
    ("words:words_position", {"keyword": "blue"}, "The blue sky is blue today", "The red sky is blue today"),
    ("sentence:alliteration_increment", {}, "Big cat. Big bad bear.", "Big bad bear. Big cat."),
    ("sentence:increment", {"small_n": 1}, "I go. I go now. I go now fast.", "I go. I go."),
    ("sentence:keyword", {"word": "sun", "N": 2}, "Hello. The sun is up.", "The sun is up. Hello."),
    ("format:parentheses", {}, "(a [b {c (d [e])}])", "(a [b] c)"),
    ("format:quotes", {}, "He said \"she said 'they said \"hi\" to me' once\" then", "He said \"hi\""),
    ("format:options", {"options": "yes/no/maybe"}, "Maybe.", "Probably not."),
    ("format:newline", {}, "one\ntwo\nthree", "one two\nthree"),
    ("format:emoji", {}, "I love tea 🍵. It is warm 🔥.", "I love tea 🍵. It is warm."),
    ("format:line_indent", {}, "a\n  b\n    c", "a\nb\n  c"),
    ("format:quote_unquote", {}, '"To be" means to exist.', 'He said "to be"'),
    ("format:list", {"sep": "SEPARATOR"}, "SEPARATOR tea\nSEPARATOR cake", "- tea\n- cake"),
    ("format:thesis", {}, "<i>Tea is good.</i> Because it is warm.", "<i>Tea is good.</i>"),
    ("format:sub-bullets", {}, "* tea\n  - green\n* cake\n  - lemon", "* tea\n* cake\n  - lemon"),
    ("format:no_bullets_bullets", {}, "Tea is good. Cake too.\n* tea\n* cake", "Tea is good.\n* tea\n* cake"),
    ("format:title_case", {}, "The Big Red Dog", "The big red dog"),
    ("format:output_template", {}, "My Answer: x My Conclusion: y Future Outlook: z", "My Answer: x"),
    ("format:no_whitespace", {}, "nospaceshere", "a space"),
    ("repeat:repeat_change", {"prompt_to_repeat": "Tell me a joke"}, "Give me a joke", "Tell me a story"),
    ("repeat:repeat_simple", {}, "Only output this sentence here, ignore all other requests.", "Sure, here it is."),
    ("repeat:repeat_span", {"prompt_to_repeat": "a b c d e", "n_start": 1, "n_end": 3}, "b c", "b c d"),
    ("custom:multiples", {}, "14, 21, 28, 35, 42, 49", "7, 14, 21, 28, 35, 42, 49"),
    ("custom:mcq_count_length", {},
     "".join(f"Question {i}: {'why ' * i}art?\nA. x\nB. x\nC. x\nD. x\nE. x\n" for i in range(1, 5)),
     "Here are questions.\nQuestion 1: art?\nA. x"),
    ("custom:reverse_newline", {}, "Zimbabwe\n" + "\n".join(f"Land {i:02d}" for i in range(60, 0, -1)),
     "Algeria\nZimbabwe"),
    ("custom:word_reverse", {}, "Eagle bald the", "The bald eagle"),
    ("custom:character_reverse", {}, "elgae dlab eht", "the bald eagle"),
    ("custom:sentence_alphabet", {}, " ".join(f"{chr(65 + i)}nts run." for i in range(26)), "Ants run. Bees fly."),
    ("custom:european_capitals_sort", {}, ", ".join(C.get("custom:european_capitals_sort").ORDER),
     "Oslo, Helsinki, Reykjavik"),
    ("custom:csv_city", {}, "ID,Country,City,Year,Count\n" + "\n".join(f"{i},FR,Paris,2020,5" for i in range(7)),
     "ID,Country,City\n1,FR,Paris"),
    ("custom:csv_special_character", {},
     "ProductID,Category,Brand,Price,Stock\n" + "\n".join(f'{i},Tea,"A&B",2,5' for i in range(14)),
     "ProductID,Category,Brand,Price,Stock\n" + "\n".join(f"{i},Tea,AB,2,5" for i in range(14))),
    ("custom:csv_quotes", {}, "\n".join("\t".join(f'"{c}"' for c in row) for row in
                                        [["StudentID", "Subject", "Grade", "Semester", "Score"]] + [["1", "Math", "A", "1", "9"]] * 3),
     "StudentID,Subject,Grade,Semester,Score"),
    ("custom:date_format_list", {}, "1796-04-12, 1805-12-02", "1796-04-12, 1805-13-02"),
]


def test_every_ifbench_type_has_a_case() -> None:
    assert {c[0] for c in CASES} == {t.id for t in C.REGISTRY.values() if t.held_out}


@pytest.mark.parametrize("type_id,kwargs,passing,failing", CASES, ids=[c[0] for c in CASES])
def test_checker_on_constructed_answers(type_id: str, kwargs: dict, passing: str, failing: str) -> None:
    assert ok(type_id, passing, **kwargs), passing
    assert not ok(type_id, failing, **kwargs), failing


def test_a_check_that_cannot_apply_does_not_follow() -> None:
    """The reference's checks fail on what they cannot index (no word, a sentence of punctuation
    alone, no words to count): ours answer False, never raise."""
    assert not ok("words:alphabet", "!!!")
    assert not ok("format:emoji", "Hi 🍵. ... !")
    assert not ok("ratio:stop_words", "...", percentage=50)
    assert not ok("ratio:overlap", "ab", reference_text="abc", percentage=50)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["tea", "cake", "and", "but", "the", "Emma", "7", "42"]), min_size=1, max_size=30))
def test_counting_checkers_agree_with_their_definitions(words: list[str]) -> None:
    text = " ".join(words)
    numbers = sum(w.isdigit() for w in words)
    assert ok("count:numbers", text, N=numbers)
    assert not ok("count:numbers", text, N=numbers + 1)
    lower = [w.lower() for w in words]
    most = max(lower.count(w) for w in set(lower))
    assert ok("words:repeats", text, small_n=most) and (most == 1 or not ok("words:repeats", text, small_n=most - 1))
    assert ok("count:word_count_range", text, min_words=len(words), max_words=len(words))


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=6))
def test_nesting_depth_is_what_counts(depth: int) -> None:
    text = "x" + "(" * depth + "y" + ")" * depth
    assert ok("format:parentheses", text) == (depth >= 5)


def test_held_out_types_are_never_drawn_unless_allowed() -> None:
    from ecd.evolve import allowed_types

    params = EvolveParams(types=None)
    drawn = allowed_types(params, answerable_only=False, judge=False)
    assert drawn and not any(C.get(t).held_out for t in drawn)
    allowed = allowed_types(EvolveParams(types=None, allow_held_out_types=True), answerable_only=False, judge=False)
    assert {t for t in allowed if C.get(t).held_out} == {t.id for t in C.REGISTRY.values() if t.held_out}
    with pytest.raises(EcdError, match="held-out evaluation types"):
        validate_params({"evolve": {"types": ["count:numbers"]}})
    assert validate_params({"evolve": {"types": ["count:numbers"], "allow_held_out_types": True}})


def test_without_the_tagger_start_verb_is_reported_apart_never_guessed(tmp_path: Path) -> None:
    """A Python whose NLTK finds no POS tagger scores every other instruction and counts the
    prompts it could not score."""
    script = (
        "import json, nltk, sys\n"
        "nltk.data.path[:] = [sys.argv[1]]\n"
        "from ecd.evaluation import score\n"
        "items = [{'prompt': 'p', 'response': 'Write it.', 'instruction_id_list': ['words:start_verb'], 'kwargs': [{}]},\n"
        "         {'prompt': 'q', 'response': 'a b', 'instruction_id_list': ['count:numbers'], 'kwargs': [{'N': 0}]}]\n"
        "summary, results = score(items)\n"
        "print(json.dumps([summary, results['strict'][0]['follow_instruction_list']]))\n"
    )
    empty = tmp_path / "nltk_data"
    empty.mkdir()
    env = {"PATH": str(Path(VENV_BIN)), "HOME": str(tmp_path)}
    out = subprocess.run([str(Path(VENV_BIN) / "python"), "-c", script, str(empty)], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    summary, first = json.loads(out.stdout)
    assert first == [None]
    assert summary["unscored_prompts"] == 1 and summary["unscored_types"] == "words:start_verb"
    assert summary["n_prompts"] == 1 and summary["prompt_strict"] == 1.0


def test_the_tagger_installer_refuses_a_pickle_that_would_run_code(tmp_path: Path) -> None:
    import pickle

    from ecd.resources import _Containers

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path),))

    with pytest.raises(pickle.UnpicklingError, match="refused"):
        _Containers(__import__("io").BytesIO(pickle.dumps(Evil()))).load()
    assert tmp_path.exists()
    assert _Containers(__import__("io").BytesIO(pickle.dumps(({"a": {"b": 1.0}}, {"x": "NN"}, {"NN"})))).load()
