"""Run in the bulk worker process by tests/bulk/test_bulkwork.py: a worker that dies halfway through sending its
result, deterministically (a kill at a random moment lands there only now and then)."""

from __future__ import annotations

import os
import signal
import struct
import sys
from types import FrameType


def die_mid_send() -> bytes:
    """Write the head of a 1 MB result message to the pool's result pipe, then die as the OOM killer would."""
    frame: FrameType | None = sys._getframe()
    while frame is not None and frame.f_code.co_name != "_process_worker":
        frame = frame.f_back
    assert frame is not None, "not called by a ProcessPoolExecutor worker"
    writer = frame.f_locals["result_queue"]._writer
    os.write(writer.fileno(), struct.pack("!i", 1 << 20) + b"\x80\x05 only the start of it")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")
