"""Every live process, read from /proc: `ps` cuts its args column to the terminal's width (80 without one), and a
long venv path pushed what a test looked for past it in CI."""

from __future__ import annotations

from pathlib import Path


def processes() -> list[tuple[int, int, str]]:
    """(pid, ppid, command line with its arguments joined by spaces) of every live process."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone in between
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # the name in (...) may hold spaces
        out.append((int(d.name), ppid, cmdline))
    return out
