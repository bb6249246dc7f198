"""`floorgate sim ptl`: run a simulated PTL bus with a live view and keys pressed from stdin.

Hook-in (gateway/cli.py): `simulators.ptl.cli.add_parser(sim_sub)` where `sim_sub` is the subparsers
object of `floorgate sim`. Commands typed on stdin are listed by `help`; the same parser is used by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from .sim import KEYS, PtlSimulator
from .view import CLEAR_HOME, render

HELP = """commands:
  press U confirm|shortage     a key on unit U (also: up U, down U)
  adjust U N                   up/down keys N times (N may be negative)
  gone U | back U              module stops / resumes answering
  slow U SECONDS               reply that late (0: normal)
  exception U CODE|off         reply with a Modbus exception
  garbage U on|off             RTU: replies with a broken CRC
  noise [N]                    RTU: N random bytes on the line
  reboot U                     power cycle (job lost, power-up bit set)
  fault U on|off               the fault status bit
  add U | remove U             a module appears / is taken away
  help | quit"""


def parse_units(text: str) -> list[int]:
    """"1-32", "1,3,7-9" -> unit ids; ValueError with the offending part."""
    units: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"unit range {part!r}: expected N or N-M, e.g. 1-32") from None
        if not (1 <= a <= b <= 247):
            raise ValueError(f"unit range {part!r}: units are 1-247, low to high")
        units.update(range(a, b + 1))
    if not units:
        raise ValueError("no units given, e.g. --modules 1-32")
    return sorted(units)


UNIT_COMMANDS = ("press", "up", "down", "adjust", "gone", "back", "slow", "exception", "garbage", "reboot", "fault",
                 "add", "remove")


@dataclass
class Reply:
    text: str
    quit: bool = False


def execute(sim: PtlSimulator, line: str) -> Reply:
    """One stdin command; bad input gives a message, never an exception."""
    words = line.split()
    if not words:
        return Reply("")
    cmd, args = words[0].lower(), words[1:]
    try:
        if cmd in ("quit", "exit", "q"):
            return Reply("bye", quit=True)
        if cmd in ("help", "?"):
            return Reply(HELP)
        if cmd == "noise":
            n = int(args[0]) if args else 24
            sim.inject_noise(os.urandom(n))
            return Reply(f"{n} noise bytes on the line")
        if cmd not in UNIT_COMMANDS:
            return Reply(f"unknown command {cmd!r} (help lists the commands)")
        if not args:
            return Reply(f"{cmd}: which unit? (help lists the commands)")
        unit = int(args[0])
        if cmd == "press":
            key = args[1] if len(args) > 1 else "confirm"
            if key not in KEYS:
                return Reply(f"press: key {key!r} unknown, use {', '.join(KEYS)}")
            ok = sim.press(unit, key)
            return Reply(f"u{unit:03d} {key}" + ("" if ok else " ignored (no job shown or keys locked)"))
        if cmd in ("up", "down"):
            ok = sim.press(unit, cmd)
            return Reply(f"u{unit:03d} {cmd}" + ("" if ok else " ignored"))
        if cmd == "adjust":
            delta = int(args[1])
            ok = sim.adjust(unit, delta)
            return Reply(f"u{unit:03d} adjusted {delta:+d}" + ("" if ok else " ignored"))
        if cmd in ("gone", "back"):
            sim.set_gone(unit, cmd == "gone")
            return Reply(f"u{unit:03d} {'gone' if cmd == 'gone' else 'back'}")
        if cmd == "slow":
            sim.set_delay(unit, float(args[1]))
            return Reply(f"u{unit:03d} replies after {float(args[1]):g} s")
        if cmd == "exception":
            code = 0 if args[1] == "off" else int(args[1])
            sim.set_exception(unit, code)
            return Reply(f"u{unit:03d} exception {code or 'off'}")
        if cmd == "garbage":
            sim.set_corrupt(unit, args[1] == "on")
            return Reply(f"u{unit:03d} CRC errors {args[1]}")
        if cmd == "reboot":
            sim.reboot(unit)
            return Reply(f"u{unit:03d} rebooted")
        if cmd == "fault":
            sim.set_fault_bit(unit, args[1] == "on")
            return Reply(f"u{unit:03d} fault bit {args[1]}")
        if cmd == "add":
            sim.add_module(unit)
            return Reply(f"u{unit:03d} added")
        if cmd == "remove":
            sim.remove_module(unit)
            return Reply(f"u{unit:03d} removed")
    except IndexError:
        return Reply(f"{cmd}: missing argument (help lists the commands)")
    except (ValueError, KeyError) as e:
        return Reply(f"{cmd}: {e}")
    return Reply(f"unknown command {cmd!r} (help lists the commands)")


async def serve(args: argparse.Namespace) -> int:
    try:
        units = parse_units(args.modules)
    except ValueError as e:
        print(f"floorgate sim ptl: {e}", file=sys.stderr)
        return 2
    sim = PtlSimulator(units, transport=args.transport, host=args.host, port=args.port, baudrate=args.baudrate)
    try:
        await sim.start()
    except OSError as e:
        print(f"floorgate sim ptl: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    where = f"tcp {args.host}:{sim.port}" if args.transport == "tcp" else f"rtu {sim.path} at {args.baudrate} baud"
    if args.transport == "rtu" and args.link:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(args.link)
        os.symlink(sim.path, args.link)
        where += f" (also {args.link})"
    print(f"PTL simulator: {len(units)} modules on {where}. Type 'help'.", flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)  # a clean stop: the RTU link is removed
    transport: asyncio.BaseTransport | None = None
    if _pollable(sys.stdin):
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:  # /dev/null or a file (a service, `< /dev/null`): nothing to read commands from
        print("stdin is neither a terminal nor a pipe: no commands; running until SIGTERM or Ctrl-C", flush=True)
    last = ""
    view = asyncio.create_task(_view_loop(sim, where, lambda: last, args.no_view), name="ptl-sim-view")
    try:
        if transport is None:
            await stopped.wait()
        while transport is not None:
            line = asyncio.ensure_future(reader.readline())
            stop = asyncio.ensure_future(stopped.wait())
            await asyncio.wait([line, stop], return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not line.done():
                line.cancel()
                break
            raw = line.result()
            if not raw:
                break
            reply = execute(sim, raw.decode(errors="replace"))
            last = reply.text
            if args.no_view and reply.text:
                print(reply.text, flush=True)
            if reply.quit:
                break
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        view.cancel()
        await asyncio.gather(view, return_exceptions=True)
        if transport is not None:
            transport.close()
        await sim.stop()
        if args.transport == "rtu" and args.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.link)
    return 0


def _pollable(stream: TextIO) -> bool:
    """Whether the event loop can wait on `stream`: epoll refuses /dev/null and regular files, and asyncio only
    finds out in a callback after `connect_read_pipe` returned (a logged PermissionError, then no input)."""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(stream, selectors.EVENT_READ)
    except (OSError, ValueError):
        return False
    return True


async def _view_loop(sim: PtlSimulator, where: str, last: Callable[[], str], quiet: bool) -> None:
    if quiet:
        return
    colour = sys.stdout.isatty()
    while True:
        text = render(sim.nodes, sim.now_ms(), {u: sim.faults(u) for u in sim.units()}, colour=colour,
                      title=f"PTL simulator on {where}")
        msg = last()
        sys.stdout.write(CLEAR_HOME + text + f"\n\n> {msg}\n")
        sys.stdout.flush()
        await asyncio.sleep(0.2)


def _run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `ptl` to the subcommands of `floorgate sim`."""
    p = sub.add_parser("ptl", help="simulated PTL bus (Modbus TCP or RTU on a pty)",
                       description="A simulated pick-to-light bus running the reference node firmware.")
    p.add_argument("--transport", choices=("tcp", "rtu"), default="tcp")
    p.add_argument("--modules", default="1-32", help="unit ids, e.g. 1-32 or 1,3,7-9 (default 1-32)")
    p.add_argument("--host", default="127.0.0.1", help="TCP listen address")
    p.add_argument("--port", type=int, default=5020, help="TCP port (0: any free port)")
    p.add_argument("--baudrate", type=int, default=115200, help="RTU baud rate the nodes use")
    p.add_argument("--link", default="", help="RTU: also make this symlink to the pty, e.g. /tmp/ptl-bus-a")
    p.add_argument("--no-view", action="store_true", help="no live view; print command replies only")
    p.set_defaults(func=_run)
