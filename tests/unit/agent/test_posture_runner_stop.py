"""Stopping the agent ends a posture collection under way at once (it used to hold the agent's
exit for the seconds an `apt-get` check takes)."""

from __future__ import annotations

import os
import threading
import time

from agent.runtime.posture_runner import SubprocessRunner


def test_stop_kills_a_running_command_and_refuses_new_ones() -> None:
    runner = SubprocessRunner(dict(os.environ), ["/usr/bin", "/bin"])
    results = []
    worker = threading.Thread(target=lambda: results.append(runner.run(["sleep", "30"], 60)))
    started = time.monotonic()
    worker.start()
    time.sleep(0.3)
    runner.stop()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert results[0].returncode is None and "stopping" in (results[0].error or "")
    assert "stopping" in (runner.run(["true"], 5).error or "")
