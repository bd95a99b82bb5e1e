"""Publishing the pairs to the Hugging Face Hub as a dataset repository with its card.

The folder the pair stage writes (``train.parquet``, ``test.parquet``, ``README.md``) is already a
Hub dataset: its card's YAML header names the splits. Publishing checks the folder, then creates
the repository and uploads the folder in one commit. The token comes from the environment only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ecd.errors import EcdError

FILES = ("train.parquet", "test.parquet", "README.md")


def check_folder(pairs_dir: Path) -> dict[str, int]:
    """Fail clearly on a folder that is not a pair dataset; return its row counts per split."""
    from ecd.pairs import features, load_pairs

    missing = [f for f in FILES if not (pairs_dir / f).exists()]
    if missing:
        raise EcdError(f"{pairs_dir}: missing {', '.join(missing)} (run `dvc repro pair` first)")
    counts = {}
    for split in ("train", "test"):
        ds = load_pairs(pairs_dir, split)
        if set(ds.column_names) != set(features()):
            raise EcdError(f"{pairs_dir / (split + '.parquet')}: not a pair table (columns {ds.column_names})")
        counts[split] = len(ds)
    return counts


def publish(pairs_dir: Path, repo_id: str, *, private: bool = True, token_env: str = "HF_TOKEN",
            revision: str | None = None, api: Any = None) -> str:
    """Create ``repo_id`` (a dataset repository) if needed and upload ``pairs_dir`` to it; return the
    commit URL. ``api`` is an ``huggingface_hub.HfApi`` (made here when None)."""
    if "/" not in repo_id:
        raise EcdError(f"repo id {repo_id!r}: expected 'owner/name'")
    counts = check_folder(pairs_dir)
    token = os.environ.get(token_env)
    if not token:
        raise EcdError(f"no Hub token: set the environment variable {token_env} (it is read from there only)")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
    info = api.upload_folder(
        folder_path=str(pairs_dir), repo_id=repo_id, repo_type="dataset", revision=revision, token=token,
        allow_patterns=list(FILES),
        commit_message=f"ecd pairs: {counts['train']} train, {counts['test']} test",
    )
    return str(getattr(info, "commit_url", info))
