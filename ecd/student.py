"""The default student: a tiny Llama-shaped model built from scratch, offline.

Nothing can be downloaded on the machines this must run on, so the student's tokenizer is a
byte-level BPE trained on the training pairs' text and its weights come from a seeded config.
Real runs name a hub id or local path in ``student.model`` instead; the rest of the pipeline is
the same code either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ecd.params import StudentParams

SPECIALS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]

#: ChatML, with generation markers so that TRL can mask everything but the assistant's tokens
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|bos|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        padding_side="left",
        additional_special_tokens=["<|im_start|>", "<|eos|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_student(texts: Iterable[str], params: StudentParams, out_dir: str | Path) -> dict[str, int]:
    """Train the tokenizer (on ``texts`` as they come: a stream), initialise the model from a seeded
    config, save both to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from ecd.records import save_model

    tok = build_tokenizer(texts, params.vocab_size)
    torch.manual_seed(params.seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size,
        num_hidden_layers=params.num_layers,
        num_attention_heads=params.num_heads,
        num_key_value_heads=params.num_kv_heads,
        max_position_embeddings=params.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        use_cache=True,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id
    )
    save_model(model, tok, out_dir)
    return {"vocab_size": len(tok), "parameters": sum(p.numel() for p in model.parameters())}


def copy_student(params: StudentParams, out_dir: str | Path) -> dict[str, int]:
    """Start from a named model (hub id or local path): save it as the base student."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ecd.layout import check_model_path
    from ecd.errors import EcdError
    from ecd.records import save_model

    check_model_path(params.model, "student.model")
    try:
        tok = AutoTokenizer.from_pretrained(params.model, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(params.model)
    except OSError as exc:
        raise EcdError(f"cannot load student model {params.model!r}: {str(exc).splitlines()[0]}") from None
    if not tok.chat_template:
        tok.chat_template = CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    save_model(model, tok, out_dir)
    return {"vocab_size": len(tok), "parameters": sum(p.numel() for p in model.parameters())}
