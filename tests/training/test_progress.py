"""The progress line of iterative runs: stage name, loss, speed with decimals, ETA."""

from __future__ import annotations

from pirf.training.progress import TrainingProgress, format_duration, format_rate


def test_rate_and_duration_formats():
    assert format_rate(None) == "-"
    assert format_rate(2.954) == "2.95 s/it"
    assert format_rate(0.07) == "14.3 it/s"
    assert format_duration(None) == "-"
    assert format_duration(12.4) == "12s"
    assert format_duration(227) == "3m47s"
    assert format_duration(3725) == "1h02m"


def test_line_names_the_stage_and_projects_the_rest():
    now = [100.0]
    progress = TrainingProgress(
        enabled=True, start=10, total=120, label="finetune", clock=lambda: now[0]
    )
    with progress:
        now[0] += 30.0  # 10 iterations in 30 s: 3 s each, 100 to go
        line = progress.line(20, 0.0837)
    assert line == "finetune: 20/120 loss 0.0837 3.00 s/it ETA 5m00s"


def test_restart_leaves_set_up_work_out_of_the_rate():
    now = [0.0]
    progress = TrainingProgress(enabled=True, start=0, total=4, clock=lambda: now[0])
    with progress:
        now[0] = 50.0  # the base model's evaluation
        progress.restart()
        now[0] = 52.0
        assert progress.timing(1) == (2.0, 6.0)
