"""`floorgate sim scanner serial|hid`: a simulated barcode scanner for demos and manual tests.

    floorgate sim scanner serial --link /tmp/scan-1 --aim ']C1' --gs1 '(01)09506000134352(10)LOT1'
    printf 'BADGE-P1\\nA-01-01\\n' | floorgate sim scanner hid --path /tmp/hid-1 --layout de

Barcodes come from the arguments, or, without any, one per line from stdin. `<GS>` or `\\x1d` is the
group separator; with --gs1 a bracketed GS1 string is sent as a GS1 symbol's element string.
The device appears first (its path is printed), then --delay passes so a reader can open it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from drivers.scanner.keymaps import LAYOUTS
from simulators.scanner.encode import TERMINATOR_BYTES, barcode_text


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
    h.set_defaults(func=run_hid)


def _barcodes(args: argparse.Namespace) -> Iterator[str]:
    lines = args.barcodes or (line.rstrip("\r\n") for line in sys.stdin)
    for line in lines:
        if line:
            yield args.aim + barcode_text(line, gs1=args.gs1)


def _pace(args: argparse.Namespace) -> Iterator[str]:
    time.sleep(args.delay)
    for i, text in enumerate(_barcodes(args)):
        if i:
            time.sleep(args.interval)
        yield text
    time.sleep(args.hold)


def run_serial(args: argparse.Namespace) -> int:
    from simulators.scanner.serial_sim import VirtualSerialScanner

    sim = VirtualSerialScanner(args.link or None, terminator=args.terminator)
    try:
        with sim:
            print(f"serial scanner on {sim.path}" + (f" -> {sim.slave_path}" if args.link else ""), flush=True)
            for text in _pace(args):
                sim.send_blocking(sim.frame(text))
                print(f"scanned {text!r}", flush=True)
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
            with VirtualUinputScanner(layout=args.layout, gs_substitute=args.gs_substitute) as ui:
                print(f"HID scanner on {ui.path} (uinput, layout {args.layout})", flush=True)
                for text in _pace(args):
                    ui.scan_blocking(text)
                    print(f"scanned {text!r}", flush=True)
        else:
            with VirtualHidFifo(args.path, layout=args.layout, gs_substitute=args.gs_substitute) as sim:
                print(f"HID scanner on {sim.path} (pipe of input events, layout {args.layout})", flush=True)
                for text in _pace(args):
                    sim.send_blocking(sim.records(text))
                    print(f"scanned {text!r}", flush=True)
    except (OSError, ValueError) as e:
        print(f"floorgate sim scanner: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
