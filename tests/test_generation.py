"""The decode loops give what ``model.generate`` gives, row by row, whatever rows share a step.

``ecd.backends.packed_decode`` (packed steps, the cache pooled by length) is the transformers backend's
loop; ``padded_decode``'s padded loop is its fallback for attention the packed one does not compute."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest
import torch

from ecd.backends import Request, TransformersBackend, answer_all
from ecd.backends.decode import SeededSampler
from ecd.backends.padded_decode import generate_continuous
from ecd.backends.packed_decode import PackedStats, generate_packed, supports_packed
from ecd.params import ModelParams

PROMPTS = ["Write about the sea.", "Hi", "List three colours and say why you like each of them, in order.",
           "What is a map?", "Describe rain in a city at night for a child.", "Count.", "Say yes or no.",
           "Explain how a bicycle works to someone who has never seen one, step by step, briefly."]


def _model(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model, padding_side="left")
    return tok, AutoModelForCausalLM.from_pretrained(tiny_model).eval()


def _ids(tok, text: str) -> list[int]:
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return tok(rendered, add_special_tokens=False)["input_ids"]


def _reference(model, tok, prompts: list[list[int]], max_new_tokens: int) -> list[tuple[list[int], bool]]:
    """``generate``'s greedy answer to each prompt alone: (tokens without the end token, stopped)."""
    out = []
    for ids in prompts:
        with torch.inference_mode():
            ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        stopped = tok.eos_token_id in ref
        out.append((ref[: ref.index(tok.eos_token_id)] if stopped else ref, stopped))
    return out


#: long and mixed: IFBench-like prompts of a few to several hundred tokens side by side
MIXED = PROMPTS + ["Summarise the following notes for a newcomer. " + "The river rose in the night and the town woke "
                   "to water in its streets; the bakers carried bread to the hill. " * 12,
                   "Rewrite this list as a table: " + ", ".join(f"item {k} costs {k * 3} pounds" for k in range(60))]


def test_greedy_rows_match_generate_one_prompt_at_a_time(tiny_model: Path) -> None:
    tok, model = _model(tiny_model)
    prompts = [_ids(tok, p) for p in PROMPTS]
    for width in (1, 3, 8):  # a batch that refills, one that shrinks, one that never needs to
        ours = generate_continuous(model, prompts, max_new_tokens=20, eos_ids={tok.eos_token_id},
                                   pad_id=tok.pad_token_id, width=width)
        for ids, got in zip(prompts, ours):
            with torch.inference_mode():
                ref = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
            stopped = tok.eos_token_id in ref
            ref = ref[: ref.index(tok.eos_token_id)] if stopped else ref
            assert (got.tokens, got.stopped) == (ref, stopped), width


def test_sampled_answers_do_not_depend_on_the_batch(tiny_model: Path) -> None:
    params = dict(backend="transformers", model=str(tiny_model), temperature=1.0, max_new_tokens=16)
    requests = [Request(messages=[{"role": "user", "content": p}], seed=i) for i, p in enumerate(PROMPTS)]
    wide = answer_all(TransformersBackend(ModelParams(batch_size=8, **params)), requests)
    narrow = answer_all(TransformersBackend(ModelParams(batch_size=2, **params)), requests[::-1])[::-1]
    assert [c.text for c in wide] == [c.text for c in narrow]
    assert len({c.text for c in wide}) > 1
    assert all(c.finish_reason in ("stop", "length") and c.completion_tokens <= 17 for c in wide)


def test_packed_linears_change_no_rows_answer_with_the_batch(tiny_model: Path) -> None:
    """oneDNN's packed linears sum in another order than MKL's matmul, so their logits are close, not
    equal; what the decode loop needs is that a row's answer does not depend on its neighbours."""
    from ecd.backends.decode import pack_linears

    tok, model = _model(tiny_model)
    prompts = [_ids(tok, p) for p in PROMPTS]
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    ids = torch.tensor([prompts[0]])
    with torch.inference_mode():
        before = model(input_ids=ids).logits
        assert pack_linears(model) == linears > 0
        after = model(input_ids=ids).logits
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    runs = [generate_continuous(model, prompts, max_new_tokens=20, eos_ids={tok.eos_token_id},
                                pad_id=tok.pad_token_id, width=width) for width in (1, 3, 8)]
    runs += [generate_packed(model, prompts, max_new_tokens=20, eos_ids={tok.eos_token_id}, width=width,
                             cache_tokens=10**6, step_tokens=step) for width, step in ((1, 512), (3, 16), (8, 512))]
    assert runs[0] == runs[1] == runs[2] == runs[3] == runs[4] == runs[5]
    assert any(g.tokens for g in runs[0])


def test_packed_rows_match_generate_on_long_and_mixed_prompts(tiny_model: Path) -> None:
    tok, model = _model(tiny_model)
    prompts = [_ids(tok, p) for p in MIXED]
    assert max(map(len, prompts)) > 8 * min(map(len, prompts))
    refs = _reference(model, tok, prompts, 24)
    longest = max(map(len, prompts)) + 24
    # a batch that refills, one that shrinks, one that never waits; a cache that holds one long row at a
    # time; prompts read in chunks of 7 tokens beside the rows decoding
    for width, cache_tokens, step_tokens in ((1, 10**6, 512), (3, 10**6, 512), (16, 10**6, 512),
                                              (16, longest, 512), (16, 10**6, 7)):
        stats = PackedStats()
        ours = generate_packed(model, prompts, max_new_tokens=24, eos_ids={tok.eos_token_id}, width=width,
                               cache_tokens=cache_tokens, step_tokens=step_tokens, stats=stats)
        assert [(g.tokens, g.stopped) for g in ours] == refs, (width, cache_tokens, step_tokens)
        assert stats.peak_rows <= width
        assert stats.peak_step_tokens <= max(step_tokens, 16) + width


def test_packed_memory_follows_the_rows_in_flight(tiny_model: Path) -> None:
    """The cache holds at most ``cache_tokens`` tokens, whatever the longest prompt: a long prompt
    waits for room instead of widening every row beside it, and when the rows' growth would overflow
    the newest gives its cache up and is read again later, its answer unchanged."""
    tok, model = _model(tiny_model)
    prompts = [_ids(tok, p) for p in MIXED]
    budget = max(map(len, prompts)) + 16
    refs = _reference(model, tok, prompts, 16)
    stats = PackedStats()
    ours = generate_packed(model, prompts, max_new_tokens=16, eos_ids={tok.eos_token_id}, width=64,
                           cache_tokens=budget, stats=stats)
    assert [(g.tokens, g.stopped) for g in ours] == refs
    heads, dim = model.config.num_key_value_heads, model.config.head_dim
    per_token = model.config.num_hidden_layers * 2 * heads * dim * 4
    assert stats.peak_tokens <= budget
    assert stats.peak_rows < len(prompts)  # some rows waited
    assert stats.preempted > 0
    # sampled answers too: a preempted row's draws continue its own stream where they stopped
    sampled = [generate_packed(model, prompts, max_new_tokens=16, eos_ids={tok.eos_token_id}, width=64,
                               cache_tokens=cache, pick=SeededSampler(list(range(len(prompts))), 1.0, 1.0).pick)
               for cache in (budget, 10**6)]
    assert sampled[0] == sampled[1]
    # what the rows hold is their own tokens, each layer's and head's rounded up to whole pages
    page_tokens = mmap.PAGESIZE // (dim * 4)
    assert 0 < stats.peak_cache_bytes <= (budget + stats.peak_rows * page_tokens) * per_token


def test_rows_copy_a_prefix_a_row_in_flight_has_read_and_answer_as_generate(tiny_model: Path) -> None:
    """Prompts that open alike (a task's long instructions, then each its own question) read the
    shared opening once: later rows copy its keys and values from a row in flight, and every answer
    is still ``generate``'s, in a cache that preempts rows and with prompts read 7 tokens a step."""
    from os.path import commonprefix

    tok, model = _model(tiny_model)
    preamble = ("You grade answers for a quiz. Read the question, think about what a careful pupil would "
                "write, and reply with one short sentence that names the key idea. ")
    prompts = [_ids(tok, preamble + q) for q in PROMPTS]
    prompts.insert(4, prompts[2])  # a prompt asked twice: all but its last token can be copied
    opening = len(commonprefix(prompts))
    assert opening > 30
    refs = _reference(model, tok, prompts, 16)
    for width, cache_tokens, step_tokens in ((3, 10**6, 7), (4, 2 * max(map(len, prompts)), 64)):
        runs, logits = {}, {}
        for share in (True, False):
            stats, seen = PackedStats(), logits.setdefault(share, {})

            def pick(step_logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
                for k, r in enumerate(rows):
                    seen.setdefault(r, []).append(step_logits[k].clone())
                return step_logits.argmax(-1)

            out = generate_packed(model, prompts, max_new_tokens=16, eos_ids={tok.eos_token_id}, width=width,
                                  cache_tokens=cache_tokens, step_tokens=step_tokens, stats=stats, pick=pick,
                                  share_prefixes=share)
            assert [(g.tokens, g.stopped) for g in out] == refs, (width, share)
            runs[share] = stats
        assert runs[False].shared_tokens == 0
        # the tiny model's logits are nearly flat, so its answers alone would hide a wrong copy: the copied
        # keys and values must give the logits reading them gives (sums in another order: ~1e-7)
        for r in range(len(prompts)):
            torch.testing.assert_close(torch.stack(logits[True][r]), torch.stack(logits[False][r]), rtol=0, atol=1e-5)
        # every row after the first few finds the opening cached by a row in flight
        assert runs[True].shared_tokens >= opening * (len(prompts) - width), (width, runs[True])
    assert runs[True].preempted > 0


@pytest.mark.skipif(sys.platform != "linux", reason="resident memory read from /proc")
def test_a_pools_memory_is_committed_as_rows_write_and_returned_as_they_leave() -> None:
    """A pool has room for many rows of its class, but only the pages its rows wrote are resident,
    and a row that leaves gives its pages back (the move keeps the other row's tokens)."""
    from ecd.backends.kv_pool import Pool

    def resident() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * mmap.PAGESIZE

    layers, heads, cap, dim = 8, 4, 4096, 64
    row_bytes = layers * 2 * heads * cap * dim * 4  # 64 MiB a full row
    before = resident()
    pool = Pool(cap, 64, (layers, heads, dim), torch.float32, "cpu")  # room for 4 GiB
    assert resident() - before < row_bytes / 8
    for request in (7, 8):
        slot = pool.add(request)
        pool.kv[:, :, slot] = 1.0 + request
    written = resident() - before
    assert 1.9 * row_bytes < written < 2.2 * row_bytes
    assert pool.remove(0, cap) == 8  # the last row moves into the freed slot
    assert resident() - before < 1.2 * row_bytes
    assert bool((pool.kv[:, :, 0] == 9.0).all()) and float(pool.kv[:, :, 1].abs().sum()) == 0.0


def test_a_pool_the_machine_cannot_map_is_a_clear_error() -> None:
    from ecd.backends.kv_pool import lazy_map
    from ecd.errors import EcdError

    with pytest.raises(EcdError, match="lower batch_size"):
        lazy_map(2**62)  # more than any address space


def test_on_done_reports_each_answer_as_it_finishes_in_request_order_of_start(tiny_model: Path) -> None:
    tok, model = _model(tiny_model)
    prompts = [_ids(tok, p) for p in MIXED]
    seen: list[int] = []
    ours = generate_packed(model, prompts, max_new_tokens=12, eos_ids={tok.eos_token_id}, width=2,
                           cache_tokens=10**6, on_done=lambda i, g: seen.append(i))
    assert sorted(seen) == list(range(len(prompts)))
    assert seen[0] in (0, 1)  # the first requests start first, so one of them finishes first
    assert all(g is not None for g in ours)


def test_the_packed_loop_runs_only_where_its_attention_is_exact(tiny_model: Path) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    _, model = _model(tiny_model)
    assert supports_packed(model)
    small = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 num_key_value_heads=1)
    assert not supports_packed(MistralForCausalLM(MistralConfig(sliding_window=8, **small)))
    assert supports_packed(MistralForCausalLM(MistralConfig(sliding_window=None, **small)))


def test_packed_attention_refuses_to_run_outside_the_loop(tiny_model: Path) -> None:
    import pytest

    from ecd.backends.packed_decode import _packed_attention

    _, model = _model(tiny_model)
    with _packed_attention(model), pytest.raises(RuntimeError, match="packed decode loop"):
        model(input_ids=torch.tensor([[1, 2, 3]]))
    out = model(input_ids=torch.tensor([[1, 2, 3]]))  # and the model's own attention is back
    assert out.logits.shape[1] == 3
