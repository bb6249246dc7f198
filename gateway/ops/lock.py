"""The run lock: one gateway per data directory, and no restore under a running gateway.

`flock` on `data_dir/floorgate.lock` is held for the gateway's whole life and released by the kernel when
the process ends, however it ends (SIGKILL, power loss), so a stale lock file never blocks a restart.
The file holds the holder's pid only to make the refusal message useful; the lock itself is the truth.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "floorgate.lock"


class AlreadyRunning(Exception):
    """Another process (a running gateway, or a restore) holds the run lock of this data directory."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path, self.pid = path, pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{path} is locked by {who}: a Floorgate gateway (or a restore) is using this data "
                         "directory. Stop it first (sudo systemctl stop floorgate) and try again.")


class RunLock:
    """A held lock; `release()` (or leaving a `with` block) lets it go."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / LOCK_NAME


def _holder_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _give_to_dir_owner(path: Path) -> None:
    """A lock file made by root (a restore run with sudo) must stay usable by the service user."""
    if os.geteuid() != 0:
        return
    st = os.stat(path.parent)
    with contextlib.suppress(OSError):
        os.chown(path, st.st_uid, st.st_gid)


def acquire_run_lock(data_dir: str | Path) -> RunLock:
    """Take the lock or raise `AlreadyRunning`. The data directory is made if missing."""
    path = lock_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        writable = True
    except PermissionError:
        # Someone else's lock file we may not write: flock works on a read-only descriptor too.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        writable = False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(path, _holder_pid(path)) from None
    except BaseException:
        os.close(fd)
        raise
    if created:
        _give_to_dir_owner(path)
    if writable:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return RunLock(fd, path)


def holder(data_dir: str | Path) -> int | None:
    """The pid written by the current holder, or None when nobody holds the lock."""
    path = lock_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder_pid(path) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def is_running(data_dir: str | Path) -> bool:
    """True while a gateway (or a restore) holds the run lock of `data_dir`."""
    return holder(data_dir) is not None
