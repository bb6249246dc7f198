"""`floorgate sim scale`: a simulated scale on a pty, steered by typing commands on stdin.

    floorgate sim scale --link /tmp/scale-1 [--mode sics|continuous] [--format sics|comma] [--unit kg]

Point a `[[scales]]` entry's `port` at the link. Commands: `put GRAMS [SECONDS_UNSTABLE]`, `overload`,
`underload`, `silent`, `talk`, `garbage`, `unplug`, `replug`, `help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from simulators.scale.sim import UNITS, ScaleSimulator

HELP = ("commands: put GRAMS [SECONDS_UNSTABLE] | overload | underload | silent | talk | garbage | unplug | "
        "replug | help")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scale", help="a simulated serial scale (MT-SICS or continuous) on a pty")
    p.add_argument("--mode", choices=["sics", "continuous"], default="sics")
    p.add_argument("--format", dest="stream_format", choices=["sics", "comma"], default="sics",
                   help="line format of continuous output (default sics: 'S S  1.234 kg'; comma: 'ST,GS,+001.234kg')")
    p.add_argument("--unit", choices=sorted(UNITS), default="kg")
    p.add_argument("--grams", type=float, default=0.0, help="initial load")
    p.add_argument("--link", default="", help="publish the pty under this path (a symlink), e.g. /tmp/scale-1")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between lines in continuous mode")
    p.set_defaults(func=_run)


def apply_command(sim: ScaleSimulator, line: str) -> str:
    """Apply one typed command; returns what to print (an error text names the right form)."""
    words = line.split()
    if not words:
        return ""
    cmd, args = words[0].lower(), words[1:]
    try:
        if cmd == "put" and len(args) in (1, 2):
            sim.put(float(args[0]), unstable_s=float(args[1]) if len(args) == 2 else 0.0)
            return f"load {sim.grams:g} g"
        if cmd in ("overload", "underload") and not args:
            sim.overload() if cmd == "overload" else sim.underload()
            return cmd
        if cmd in ("silent", "talk") and not args:
            sim.silent = cmd == "silent"
            return "silent" if sim.silent else "talking"
        if cmd == "garbage" and not args:
            sim.garbage_next()
            return "next reply is garbage"
        if cmd == "unplug" and not args:
            sim.unplug()
            return "unplugged"
        if cmd == "replug" and not args:
            sim.replug()
            return f"plugged in at {sim.path}"
    except ValueError:
        pass
    return HELP


def _run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    sim = ScaleSimulator(mode=args.mode, stream_format=args.stream_format, unit=args.unit,
                         link=args.link or None, interval_s=args.interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        sim.put(args.grams)
        print(f"scale simulator ({args.mode}) at {sim.path}; {HELP}", flush=True)
        fd = sys.stdin.fileno()
        reading = _watch_stdin(fd, sim)
        try:
            await stop.wait()
        finally:
            if reading:
                loop.remove_reader(fd)


def _watch_stdin(fd: int, sim: ScaleSimulator) -> bool:
    """Read typed commands without blocking the loop that serves the pty; False if stdin cannot be watched."""
    loop = asyncio.get_running_loop()
    buf = bytearray()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # stdin closed: keep simulating, stop listening
            loop.remove_reader(fd)
            return
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            out = apply_command(sim, line.decode("utf-8", "replace"))
            if out:
                print(out, flush=True)

    try:
        loop.add_reader(fd, readable)
    except (ValueError, OSError, PermissionError):
        return False
    with contextlib.suppress(OSError):
        os.set_blocking(fd, False)
    return True
