"""A long step's progress: silent when short, a line per tenth off a terminal, a closed bar on one."""

import io
import sys

from rnnbench.progress import Progress


def clock(*times: float):
    ticks = iter(times)
    return lambda: next(ticks)


def test_a_step_within_the_delay_shows_nothing():
    lines: list[str] = []
    progress = Progress(lines.append, "read", "rows", delay=3.0, terminal=False, clock=clock(0.0, 1.0, 2.9))
    for done in (0, 500, 1000):
        progress(done, 1000)
    assert lines == []


def test_lines_come_once_per_tenth_and_never_more_than_ten():
    lines: list[str] = []
    times = [0.0] + [float(second) for second in range(1, 101)]
    progress = Progress(lines.append, "encoded", "rows", delay=0.5, terminal=False, clock=clock(*times))
    progress(0, 1000)
    for done in range(10, 1001, 10):
        progress(done, 1000)
    assert len(lines) == 10
    assert lines[0] == "encoded 100 of 1,000 rows (10.0 s, 10 rows/s)"
    assert lines[-1] == "encoded 1,000 of 1,000 rows (100.0 s, 10 rows/s)"


def test_the_first_line_after_the_delay_names_the_tenth_reached():
    lines: list[str] = []
    progress = Progress(lines.append, "tokenized", delay=3.0, terminal=False, clock=clock(0.0, 2.0, 4.0, 5.0))
    for done in (0, 3_000, 6_000, 10_000):
        progress(done, 10_000)
    assert lines == [
        "tokenized 6,000 of 10,000 texts (4.0 s, 1,500 texts/s)",
        "tokenized 10,000 of 10,000 texts (5.0 s, 2,000 texts/s)",
    ]


def test_on_a_terminal_a_bar_with_counts_and_rate_goes_to_standard_error_and_is_closed(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    lines: list[str] = []
    progress = Progress(lines.append, "tokenized", delay=0.0, terminal=True)
    for done in (0, 50, 100):
        progress(done, 100)
    assert lines == []
    # tqdm redraws at most ten times a second, so this quick step shows its start only.
    assert screen.getvalue().startswith("\rtokenized:   0%|") and "0/100 [00:00<?, ? texts/s]" in screen.getvalue()
    assert progress.bar.n == 100 and progress.bar.disable  # tqdm disables a bar it has closed
