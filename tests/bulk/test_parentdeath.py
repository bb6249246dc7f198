"""gateway/parentdeath.py on its own: a worker whose gateway died before it could ask for the parent-death
signal exits at once (the signal would never come). The whole chain, through a SIGKILLed gateway, is in
tests/bulk/test_bulk_process.py."""

from __future__ import annotations

import subprocess
import sys


def test_a_worker_whose_gateway_is_already_gone_exits() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=60)
    code = f"from gateway.parentdeath import die_with_parent; die_with_parent({gone.pid}); print('ran on')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")


def test_a_worker_whose_gateway_lives_goes_on() -> None:
    code = "import os; from gateway.parentdeath import die_with_parent; print(die_with_parent(os.getppid()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "True\n")
