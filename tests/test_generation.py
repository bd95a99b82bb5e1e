"""The decode loop that refills finished rows' slots gives what ``model.generate`` gives, row by row."""

from __future__ import annotations

from pathlib import Path

import torch

from ecd.backends import Request, TransformersBackend
from ecd.generation import generate_continuous
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
    wide = TransformersBackend(ModelParams(batch_size=8, **params)).generate(requests)
    narrow = TransformersBackend(ModelParams(batch_size=2, **params)).generate(requests[::-1])[::-1]
    assert [c.text for c in wide] == [c.text for c in narrow]
    assert len({c.text for c in wide}) > 1
    assert all(c.finish_reason in ("stop", "length") and c.completion_tokens <= 17 for c in wide)


def test_packed_linears_change_no_rows_answer_with_the_batch(tiny_model: Path) -> None:
    """oneDNN's packed linears sum in another order than MKL's matmul, so their logits are close, not
    equal; what the decode loop needs is that a row's answer does not depend on its neighbours."""
    from ecd.generation import pack_linears

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
    assert runs[0] == runs[1] == runs[2]
    assert any(g.tokens for g in runs[0])
