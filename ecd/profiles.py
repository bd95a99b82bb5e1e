"""Named params profiles: a YAML file in ``profiles/`` whose values go over ``params.yaml``.

A profile is a params set a user runs in one command (``ecd profile run smollm2``, ``make real``): the
merged params are validated, written to ``params.yaml`` for the length of one ``dvc exp run``, and
the shipped file is put back afterwards, so the experiment records every value it ran with and the
workspace keeps the offline defaults.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from ecd.errors import EcdError, did_you_mean
from ecd.params import read_yaml, validate_params
from ecd.records import read_text, write_text

PROFILES = Path("profiles")
PARAMS = Path("params.yaml")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over``'s values over ``base``; mappings merge key by key, except ``rounds`` and ``models``,
    which a profile gives whole."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("rounds", "models"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def merged(name: str) -> dict[str, Any]:
    """params.yaml with profile ``name`` over it, validated."""
    path = PROFILES / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
        raise EcdError(f"no profile {name!r}{did_you_mean(name, known)}; profiles: {', '.join(known) or 'none'}")
    over = read_yaml(path) or {}
    base = read_yaml(PARAMS) or {}
    params = _merge(base, over)
    validate_params(params, f"{PARAMS} with {path}")
    return params


def _dvc_set(params: dict[str, Any], item: str) -> str:
    """DVC's ``-S`` overrides only keys the params file has; a key the profile leaves at its default
    (``teacher.base_url``) is added with DVC's ``+`` prefix."""
    key = item.split("=", 1)[0]
    node: Any = params
    for part in key.lstrip("+").split("."):
        if not isinstance(node, dict) or part not in node:
            return item if item.startswith("+") else "+" + item
        node = node[part]
    return item


def run(name: str, exp_name: str, sets: list[str], targets: list[str] | None = None) -> int:
    """``dvc exp run --temp -n exp_name`` with the profile's params (the workspace keeps its own
    outputs; ``dvc exp apply exp_name`` brings the run's in), params.yaml restored afterwards. The
    call cache and the timings log are this project's, so the run reuses every answer already made."""
    import os

    from ecd import layout
    from ecd.cache import cache_dir

    params = merged(name)
    shipped = PARAMS.read_bytes()
    env = {**os.environ, "ECD_CACHE_DIR": str(cache_dir().resolve()),
           "ECD_TIMINGS": str(layout.timings_path().resolve())}
    import signal

    write_text(PARAMS, yaml.safe_dump(params, sort_keys=False))
    # a terminated run must still put the shipped params.yaml back (SIGINT already unwinds)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        cmd = ["dvc", "exp", "run", "--temp", "-n", exp_name]
        for s in sets:
            cmd += ["-S", _dvc_set(params, s)]
        return subprocess.run([*cmd, *(targets or [])], env=env).returncode
    finally:
        PARAMS.write_bytes(shipped)
