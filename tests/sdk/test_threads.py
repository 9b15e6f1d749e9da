"""Threads from the cores actually free: a core kept busy by another process is not counted."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from edgecart.threads import busy_cores, free_cores, usable_cores


def test_explicit_and_environment_choices_win(monkeypatch):
    assert free_cores(3) == 3
    monkeypatch.setenv("EDGECART_THREADS", "2")
    assert free_cores() == 2
    monkeypatch.setenv("EDGECART_THREADS", "two")
    with pytest.raises(ValueError, match="EDGECART_THREADS"):
        free_cores()
    with pytest.raises(ValueError, match=">= 1"):
        free_cores(0)


def test_a_core_taken_by_another_process_is_left_alone(monkeypatch):
    monkeypatch.delenv("EDGECART_THREADS", raising=False)
    if usable_cores() < 2 or busy_cores() is None:
        pytest.skip("needs 2+ usable cores and /proc/stat")
    spin = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()+30\nwhile time.time()<t: pass"])
    try:
        time.sleep(0.5)
        assert busy_cores() >= 0.6          # the spinner shows up at once (the load average would lag a minute)
        assert free_cores() <= usable_cores() - 1
    finally:
        spin.kill()
        spin.wait()
