"""`floorgate sim scanner serial|hid`: a simulated barcode scanner for demos and manual tests.

    floorgate sim scanner serial --link /tmp/scan-1 --aim ']C1' --gs1 '(01)09506000134352(10)LOT1'
    printf 'BADGE-P1\\nA-01-01\\n' | floorgate sim scanner hid --path /tmp/hid-1 --layout de

Barcodes come from the arguments, or, without any, one per line from stdin. `<GS>` or `\\x1d` is the
group separator; with --gs1 a bracketed GS1 string is sent as a GS1 symbol's element string.
The device appears first (its path is printed), then --delay passes so a reader can open it.

A technician pulls the cable and plugs it back with two lines (or arguments) of their own:

    <UNPLUG>   the device goes away (the pty is hung up, the pipe closed, the uinput device destroyed;
               a --link or pipe path is removed), as when the USB cable is pulled
    <REPLUG>   it comes back (a new pty or event node; a --link follows it), as on re-enumeration

A barcode while unplugged is not sent (a scanner without its cable scans nothing) and says so on stderr.

    floorgate sim scanner serial --link /tmp/scan-1 BADGE-P1 '<UNPLUG>' '<REPLUG>' A-01-01
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from drivers.scanner.keymaps import LAYOUTS
from simulators.scanner.encode import TERMINATOR_BYTES, barcode_text

UNPLUG = "<UNPLUG>"
REPLUG = "<REPLUG>"
COMMANDS = (UNPLUG, REPLUG)


class Pluggable(Protocol):
    @property
    def plugged(self) -> bool: ...

    def unplug(self) -> None: ...

    def replug(self) -> str: ...


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scanner", help="a simulated barcode scanner (serial on a pty, or HID)")
    kinds = p.add_subparsers(dest="scanner_kind", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("barcodes", nargs="*", help="barcodes to scan; without any, one per line from stdin")
    common.add_argument("--aim", default="", help="AIM symbology identifier to send first, e.g. ]C1")
    common.add_argument("--gs1", action="store_true", help="send bracketed GS1 strings as element strings")
    common.add_argument("--delay", type=float, default=1.0, help="seconds between appearing and the first scan")
    common.add_argument("--interval", type=float, default=0.2, help="seconds between scans")
    common.add_argument("--hold", type=float, default=1.0, help="seconds to stay plugged in after the last scan")

    s = kinds.add_parser("serial", parents=[common], help="a serial scanner on a pseudo-terminal")
    s.add_argument("--link", default="", help="stable path to create as a symlink to the pty (like /dev/serial/by-id)")
    s.add_argument("--terminator", choices=sorted(TERMINATOR_BYTES), default="crlf")
    s.set_defaults(func=run_serial)

    h = kinds.add_parser("hid", parents=[common], help="a keyboard-wedge scanner (uinput, or a pipe of key events)")
    where = h.add_mutually_exclusive_group(required=True)
    where.add_argument("--path", default="", help="named pipe of input_event records to create (no uinput needed)")
    where.add_argument("--uinput", action="store_true", help="create a real input device through /dev/uinput")
    h.add_argument("--layout", choices=sorted(LAYOUTS), default="us")
    h.add_argument("--gs-substitute", default="", help="character to type for GS instead of Ctrl+]")
    h.add_argument("--link", default="", help="with --uinput: stable path to create as a symlink to the event "
                                              "node, which may change at a replug (like /dev/input/by-id)")
    h.set_defaults(func=run_hid)


def _barcodes(args: argparse.Namespace) -> Iterator[str]:
    """What to do next: a barcode's text, or one of COMMANDS."""
    lines = args.barcodes or (line.rstrip("\r\n") for line in sys.stdin)
    for line in lines:
        command = line.strip().upper()
        if command in COMMANDS:
            yield command
        elif line:
            yield args.aim + barcode_text(line, gs1=args.gs1)


def _pace(args: argparse.Namespace) -> Iterator[str]:
    time.sleep(args.delay)
    for i, text in enumerate(_barcodes(args)):
        if i:
            time.sleep(args.interval)
        yield text
    time.sleep(args.hold)


def _play(args: argparse.Namespace, sim: Pluggable, send: Callable[[str], None], where: Callable[[], str]) -> None:
    """Scan, unplug and replug in the order given; `where` says where the device is now."""
    for item in _pace(args):
        if item == UNPLUG:
            if sim.plugged:
                sim.unplug()
                print("unplugged", flush=True)
            else:
                print("already unplugged", flush=True)
        elif item == REPLUG:
            sim.replug()
            print(f"plugged in again: {where()}", flush=True)
        elif not sim.plugged:
            print(f"not scanned (unplugged; send {REPLUG} first): {item!r}", file=sys.stderr, flush=True)
        else:
            send(item)
            print(f"scanned {item!r}", flush=True)


def run_serial(args: argparse.Namespace) -> int:
    from simulators.scanner.serial_sim import VirtualSerialScanner

    sim = VirtualSerialScanner(args.link or None, terminator=args.terminator)

    def where() -> str:
        return f"serial scanner on {sim.path}" + (f" -> {sim.slave_path}" if args.link else "")

    try:
        with sim:
            print(where(), flush=True)
            _play(args, sim, lambda text: sim.send_blocking(sim.frame(text)), where)
    except (OSError, ValueError) as e:
        print(f"floorgate sim scanner: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def run_hid(args: argparse.Namespace) -> int:
    from simulators.scanner.hid_sim import VirtualHidFifo, VirtualUinputScanner, uinput_available

    try:
        if args.uinput:
            ok, why = uinput_available()
            if not ok:
                print(f"floorgate sim scanner: cannot use uinput: {why}; use --path for a pipe", file=sys.stderr)
                return 2
            with VirtualUinputScanner(layout=args.layout, gs_substitute=args.gs_substitute,
                                      link=args.link or None) as ui:
                def where_ui() -> str:
                    via = f" -> {ui.event_path}" if args.link else ""
                    return f"HID scanner on {ui.path}{via} (uinput, layout {args.layout})"

                print(where_ui(), flush=True)
                _play(args, ui, ui.scan_blocking, where_ui)
        else:
            if args.link:
                print("floorgate sim scanner: --link goes with --uinput; a --path pipe keeps its path across "
                      "a replug", file=sys.stderr)
                return 2
            with VirtualHidFifo(args.path, layout=args.layout, gs_substitute=args.gs_substitute) as sim:
                def where_pipe() -> str:
                    return f"HID scanner on {sim.path} (pipe of input events, layout {args.layout})"

                print(where_pipe(), flush=True)
                _play(args, sim, lambda text: sim.send_blocking(sim.records(text)), where_pipe)
    except (OSError, ValueError) as e:
        print(f"floorgate sim scanner: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
