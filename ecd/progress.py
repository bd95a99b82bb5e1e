"""Rich progress bars for long steps: done/total, rate, tokens/s and time left."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)


class _RateColumn(ProgressColumn):
    """Items per second and, where the task counts them, tokens per second."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        done = task.completed - task.fields.get("skipped", 0)
        if elapsed <= 0 or done <= 0:
            return Text("")
        parts = [f"{done / elapsed:.1f}/s"]
        tokens = task.fields.get("tokens", 0)
        if tokens:
            parts.append(f"{tokens / elapsed:.0f} tok/s")
        return Text(" ".join(parts), style="progress.data.speed", no_wrap=True)


class Bar:
    def __init__(self, progress: Progress, task_id: int) -> None:
        self._p, self._t = progress, task_id
        self._tokens = 0

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        self._tokens += tokens
        self._p.update(self._t, advance=n, tokens=self._tokens)


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0) -> Iterator[Bar]:
    """A progress bar on stderr; ``completed`` items (cache hits) start it part way."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        task_id = progress.add_task(description, total=total, completed=completed, start=True)
        progress.update(task_id, skipped=completed, tokens=0)
        yield Bar(progress, task_id)


def trainer_progress():  # -> transformers.TrainerCallback
    """A transformers ``TrainerCallback`` that shows one rich bar with the latest loss.

    (TRL's own ``RichProgressCallback`` prints a full table per log line, too much for a stage log.)
    Built in a function so that importing ecd.progress does not import transformers.
    """
    from transformers import TrainerCallback

    class TrainerProgress(TrainerCallback):
        def __init__(self) -> None:
            self._progress: Any = None
            self._bar: Any = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:  # one bar under `accelerate launch`
                return
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(bar_width=24), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            )
            self._progress.start()
            self._bar = self._progress.add_task("train", total=state.max_steps, info="")

        def on_step_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.update(self._bar, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and self._progress is not None:
                info = f"loss {float(logs['loss']):.3f}"
                if "rewards/accuracies" in logs:
                    info += f"  acc {float(logs['rewards/accuracies']):.2f}"
                self._progress.update(self._bar, info=info)

        def on_train_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.stop()

    return TrainerProgress()
