"""Progress that reaches a log: where stderr is not a terminal (pytest's capture here, as in CI,
``nohup`` or DVC's queue workers) long steps print plain lines instead of a bar."""

from __future__ import annotations

from ecd.progress import console, progress_bar, trainer_progress


def test_a_step_prints_lines_at_its_interval_and_when_it_ends(capsys, monkeypatch) -> None:
    assert not console.is_terminal
    monkeypatch.setenv("ECD_PROGRESS_INTERVAL", "0")
    with progress_bar("sample r1", total=4, completed=1) as bar:  # one answer from the cache
        for _ in range(3):
            bar.advance(1, tokens=100)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["sample r1: 2/4 (50%)", "sample r1: 3/4 (75%)", "sample r1: 4/4 (100%)"]
    assert "/s" in lines[-1] and "tok/s" in lines[-1] and "left 0:00:00" in lines[-1]


def test_a_fast_step_prints_only_its_last_line(capsys, monkeypatch) -> None:
    monkeypatch.delenv("ECD_PROGRESS_INTERVAL", raising=False)  # every 30 s
    with progress_bar("answer control", total=50) as bar:
        for _ in range(50):
            bar.advance()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("answer control: 50/50 (100%)")


def test_training_reports_its_steps_and_loss_in_lines(capsys, monkeypatch) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    monkeypatch.setenv("ECD_PROGRESS_INTERVAL", "0")
    callback, state = trainer_progress(), TrainerState(max_steps=3)
    args, control = TrainingArguments(output_dir="unused", report_to="none"), TrainerControl()
    callback.on_train_begin(args, state, control)
    for step in (1, 2, 3):
        state.global_step = step
        callback.on_log(args, state, control, logs={"loss": 1.0 / step, "rewards/accuracies": 0.5})
        callback.on_step_end(args, state, control)
    callback.on_train_end(args, state, control)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("train: 1/3 (33%)") and "loss 1.000  acc 0.50" in lines[0]
    assert lines[-1].startswith("train: 3/3 (100%)") and "loss 0.333" in lines[-1]
