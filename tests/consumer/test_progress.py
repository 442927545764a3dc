"""Long work says how far it got: in the log when there is no terminal to draw a bar on."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

from consumer.progress import progress
from tests.conftest import SAMPLE


def test_without_a_terminal_progress_goes_to_the_log_with_the_share_done(caplog):
    caplog.set_level(logging.INFO, logger="insiders")
    bar = progress(total=500, desc="history.csv", interval=1e-9)
    for _ in range(5):
        bar.update(100)
    bar.close()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert said, "no progress logged"
    assert said[-1].startswith("progress: history.csv: 500 of 500 lines (100%) in 00:00, ")


def test_work_shorter_than_the_interval_logs_no_progress(caplog):
    caplog.set_level(logging.INFO, logger="insiders")
    with progress(total=500, interval=60) as bar:
        bar.update(500)
    assert not [r for r in caplog.records if r.getMessage().startswith("progress:")]


def test_a_replay_in_a_pipe_logs_its_progress_as_often_as_the_setting_says():
    def replay(every: str) -> str:
        env = {**os.environ, "INSIDERS_PROGRESS_EVERY": every}
        done = subprocess.run(
            [sys.executable, "-m", "consumer.cli", "replay", str(SAMPLE)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    often = [line for line in replay("0.001").splitlines() if "progress:" in line]
    assert len(often) >= 2
    shape = re.compile(
        r"progress: (\d{1,3}(,\d{3})*) lines in \d\d:\d\d, [\d.]+k? lines/s(, insiders=\d+)?$"
    )
    assert all(shape.search(line) for line in often), often
    counts = [int(shape.search(line)[1].replace(",", "")) for line in often]  # type: ignore[index]
    assert counts == sorted(counts) and counts[-1] <= 31_325  # exact counts, never past the file
    assert "progress:" not in replay("60")  # the sample replays in seconds
