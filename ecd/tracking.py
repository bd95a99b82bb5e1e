"""Training curves through dvclive, and the other trackers a user selects.

Every training stage logs its per-step metrics with dvclive into its own folder, ``dvclive/<run>``
(``metrics.json`` and ``plots/metrics/<name>.tsv``), declared in ``dvc.yaml`` as the stage's metrics
and plots: ``dvc plots show``, ``dvc exp show``, Studio and the VS Code extension read them, and
``ecd report`` draws them through ``dvc plots``.

The Live object is ours, not the one ``report_to="dvclive"`` would make: that one writes its own
stage into ``dvc.yaml`` (``dvcyaml``), saves a DVC experiment of its own at the end and logs every
``TrainingArguments`` field and the wall-clock summary, so the same run would not give the same
bytes. Ours logs what the curves held before (each step's numbers, under TRL's names, at the
trainer's step), no clock, nothing outside its folder. The folder is written as training goes, so
a run can be watched live; a killed run leaves the steps logged so far, which DVC's lock never
records and the rerun replaces.

``train.report_to`` adds other trackers (``tensorboard``, ``wandb``, ``mlflow``) through
transformers' own integrations; each is an extra (``pip install 'ecd[tensorboard]'``), checked
before training starts.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from ecd.errors import EcdError

#: logged wall-clock times (GRPO logs each step's): kept out of the curves, so the same run gives
#: the same plots and the same dvc.lock (``ecd timings`` keeps times)
WALL_CLOCK_KEYS = frozenset({"step_time"})

#: params' ``train.report_to`` name → the module transformers' integration imports, and the extra
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def curve_entry(logs: dict[str, Any]) -> dict[str, float] | None:
    """The numbers of one logged step that go into the curves, or None for a log that is not a
    training step (the trainer's closing summary has no loss)."""
    if "loss" not in logs:
        return None
    return {k: v for k, v in logs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in WALL_CLOCK_KEYS and k != "step"}


class LiveCurves(TrainerCallback):
    """Each training step's numbers to dvclive at the trainer's step, on the main process only."""

    def __init__(self, live_dir: Path) -> None:
        self.dir = live_dir
        self.live: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            from dvclive import Live

            self.live = Live(dir=str(self.dir), dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        entry = curve_entry(logs or {})
        if self.live is None or entry is None:
            return
        self.live.step = state.global_step
        for name, value in entry.items():
            self.live.log_metric(name, value)
        self.live.make_summary()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None


def no_curves(live_dir: Path) -> None:
    """The folder of a run that trained no step (``train.sft.steps: 0``): an empty summary and no
    curves, so that the stage's declared outputs exist."""
    import shutil

    shutil.rmtree(live_dir, ignore_errors=True)
    (live_dir / "plots").mkdir(parents=True)
    (live_dir / "metrics.json").write_text("{}\n")


def report_to(trackers: Sequence[str]) -> list[str]:
    """``train.report_to`` for transformers, each tracker's package checked first: a missing one is
    an error that names the extra to install, before any training starts."""
    import importlib.util

    for name in trackers:
        module, extra = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise EcdError(f"train.report_to lists {name}, which is not installed: pip install 'ecd[{extra}]' "
                           f"(dvclive logs every run whatever report_to says)")
    return list(trackers) or ["none"]
