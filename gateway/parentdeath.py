"""The bulk worker and its fork server die with the gateway (gateway/bulkwork.py; gateway/forkserver_preload.py).

Why the server needs it: a worker holds a copy of the gateway's end of the server's "alive" pipe (multiprocessing
passes it on, so that a worker could use the server too). The server exits when every copy is closed, so a
SIGKILLed gateway left the server waiting for its busy worker, and that worker (the parent-death signal is sent
when its parent, the server, ends) ran on to the end of its part: many seconds at SCHED_IDLE, without end while
the floor left it no CPU, or while it was stopped.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Ask the kernel for SIGKILL when this process's parent ends. The signal follows the parent *thread*: the
    gateway starts the fork server from its main thread (gateway/app.py `open`). With `parent_pid`, the parent
    that must still be alive (the gateway, for a worker): if it already died, the signal will never come, so
    exit now. False where the call does not exist (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent_pid is not None:
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, under another user
            pass
    return True

