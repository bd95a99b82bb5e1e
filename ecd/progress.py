"""Progress of long steps: done/total, rate, tokens/s and time left — a rich bar on a terminal, and
plain lines at an interval where stderr is not one (CI logs, `nohup`, DVC's queue workers), where a
bar would draw only its last state."""

from __future__ import annotations

import os
import time
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


#: seconds between two plain progress lines (``ECD_PROGRESS_INTERVAL``)
DEFAULT_INTERVAL = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("ECD_PROGRESS_INTERVAL", DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Lines:
    """Progress as plain lines: one when a step starts, one every ``interval`` seconds while it runs
    (no more often), and one when it ends."""

    def __init__(self, description: str, total: int, completed: int = 0, interval: float | None = None) -> None:
        self.description, self.total, self.done, self.skipped = description, total, completed, completed
        self.tokens, self.info = 0, ""
        self.interval = _interval() if interval is None else interval
        self.start = self.last = time.monotonic()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        parts = [f"{self.description}: {self.done}/{self.total}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        worked = self.done - self.skipped
        if elapsed > 0 and worked > 0:
            parts.append(f"{worked / elapsed:.2f}/s" + (f" {self.tokens / elapsed:.0f} tok/s" if self.tokens else ""))
            parts.append(f"elapsed {_clock(elapsed)} left {_clock(elapsed / worked * (self.total - self.done))}")
        if self.info:
            parts.append(self.info)
        return "  ".join(parts)

    def update(self, done: int | None = None, advance: int = 0, tokens: int = 0, info: str | None = None) -> None:
        self.done = done if done is not None else self.done + advance
        self.tokens += tokens
        self.info = info if info is not None else self.info
        now = time.monotonic()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def finish(self) -> None:
        console.print(self.line(), markup=False, highlight=False, soft_wrap=True)


class Bar:
    def __init__(self, progress: Progress | None, task_id: int, lines: Lines | None = None) -> None:
        self._p, self._t, self._lines = progress, task_id, lines
        self._tokens = 0

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        self._tokens += tokens
        if self._lines is not None:
            self._lines.update(advance=n, tokens=tokens)
        elif self._p is not None:
            self._p.update(self._t, advance=n, tokens=self._tokens)


@contextmanager
def progress_bar(description: str, total: int, completed: int = 0) -> Iterator[Bar]:
    """A progress bar on stderr (plain lines where it is not a terminal); ``completed`` items (cache
    hits) start it part way."""
    if not console.is_terminal:
        lines = Lines(description, total, completed)
        try:
            yield Bar(None, 0, lines)
        finally:
            lines.finish()
        return
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
            self._lines: Lines | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:  # one bar under `accelerate launch`
                return
            if not console.is_terminal:
                self._lines = Lines("train", state.max_steps)
                return
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(bar_width=24), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
            )
            self._progress.start()
            self._bar = self._progress.add_task("train", total=state.max_steps, info="")

        def on_step_end(self, args, state, control, **kwargs):
            if self._lines is not None:
                self._lines.update(done=state.global_step)
            elif self._progress is not None:
                self._progress.update(self._bar, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                info = f"loss {float(logs['loss']):.3f}"
                if "rewards/accuracies" in logs:
                    info += f"  acc {float(logs['rewards/accuracies']):.2f}"
                if "reward" in logs:
                    info += f"  reward {float(logs['reward']):.3f}"
                if self._lines is not None:
                    self._lines.info = info
                elif self._progress is not None:
                    self._progress.update(self._bar, info=info)

        def on_train_end(self, args, state, control, **kwargs):
            if self._lines is not None:
                self._lines.finish()
            elif self._progress is not None:
                self._progress.stop()

    return TrainerProgress()
