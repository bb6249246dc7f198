"""`floorgate ptl scan|test|identify|set-address`: technician tools for a PTL bus, without the gateway.

Hook-in (gateway/cli.py): `drivers.ptl.cli.add_parser(sub)` with the top-level subparsers. Each command
opens the bus itself (stop the gateway first on RTU: a serial port has one master), so it works on a
bench with a laptop and a USB RS-485 adapter as well as against `floorgate sim ptl`.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from collections.abc import Awaitable, Callable

import serial

from .bus import PtlBus
from .codec import BAUD_RATES, Colour, Identity, check_unit
from .errors import LinkDown, ModuleMiss, NoResponse, PtlError
from .model import BusSettings, ModuleState

# A unit id counts as free only after this many silent probes: one reply lost to noise must not let a
# second module be put on an occupied address.
FREE_PROBES = 2
# How long the moved module may take to answer at its new address (reboot, then the firmware's start).
VERIFY_S = 3.0


class AddressCheckFailed(PtlError):
    """set-address refused a move, or could not confirm that the module it moved is the one answering."""


def parse_units(text: str) -> list[int]:
    """"1-32", "1,3,7-9" -> unit ids; ValueError naming the bad part."""
    units: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"unit range {part!r}: expected N or N-M, e.g. 1-32") from None
        if not 1 <= a <= b <= 247:
            raise ValueError(f"unit range {part!r}: units are 1-247, low to high")
        units.update(range(a, b + 1))
    if not units:
        raise ValueError("no units given, e.g. --units 1-32")
    return sorted(units)


def settings_from_args(args: argparse.Namespace) -> BusSettings:
    port: int | str = args.port
    if args.transport == "tcp":
        try:
            port = int(args.port)
        except ValueError:
            raise ValueError(f"--port {args.port!r}: a TCP port number with --transport tcp") from None
    return BusSettings(id="ptl-tool", transport=args.transport, host=args.host, port=port,
                       baudrate=args.baudrate, parity=args.parity, timeout_ms=args.timeout_ms,
                       misses_offline=1, poll_ms=20)


async def scan(bus: PtlBus, units: list[int], out: Callable[[str], None] = print,
               odd: dict[int, str] | None = None) -> dict[int, Identity]:
    """Every unit that answers, with its identity block. A unit that answers, but not with an identity (an
    exception: another register map; a garbled reply: two modules at one address, or a bad line), is printed
    too, and put in `odd`: hidden, it looked like a free address to whoever then put a module there."""
    found: dict[int, Identity] = {}
    for unit in units:
        try:
            found[unit] = ident = await bus.read_identity(unit)
        except LinkDown:
            raise
        except NoResponse:
            continue
        except ModuleMiss as e:
            if odd is not None:
                odd[unit] = str(e)
            out(f"u{unit:03d}  something answers, but not as a Floorgate PTL node: {e}")
            continue
        except PtlError:
            continue
        out(f"u{unit:03d}  model {ident.model_number}  {ident.model_name!r}  serial {ident.serial!r}  "
            f"firmware {ident.firmware}")
    return found


async def light_test(bus: PtlBus, units: list[int], seconds: float,
                     out: Callable[[str], None] = print) -> list[int]:
    """Light each module in turn (its unit id on the display, colours cycling); returns the ones that failed."""
    colours = [Colour.GREEN, Colour.BLUE, Colour.YELLOW, Colour.MAGENTA, Colour.CYAN, Colour.WHITE, Colour.RED]
    failed: list[int] = []
    for i, unit in enumerate(units):
        bus.set_state(unit, ModuleState.info(unit, colours[i % len(colours)]))
        try:
            async with asyncio.timeout(max(1.0, 4 * bus.settings.timeout_ms / 1000)):
                await bus.wait_shown(unit)
        except TimeoutError:
            failed.append(unit)
            out(f"u{unit:03d}  NO ANSWER")
            bus.unwatch(unit)
            continue
        out(f"u{unit:03d}  lit {colours[i % len(colours)].name.lower()}")
        await asyncio.sleep(seconds)
        bus.set_state(unit, ModuleState.off())
        async with asyncio.timeout(2.0):
            await bus.wait_shown(unit)
        bus.unwatch(unit)
    return failed


async def _answer_at(bus: PtlBus, unit: int) -> str | None:
    """What answers at `unit` (a module's serial, an exception, a garbled reply), or None after silence."""
    for _ in range(FREE_PROBES):
        try:
            ident = await bus.read_identity(unit)
        except NoResponse:
            continue
        except ModuleMiss as e:  # an exception or a garbled reply is still a device at that address
            return f"a device ({e})"
        return f"the module with serial {ident.serial!r}"
    return None


async def set_address(bus: PtlBus, unit: int, new_unit: int, new_baudrate: int | None = None,
                      out: Callable[[str], None] = print) -> Identity | None:
    """Move the module at `unit` to `new_unit` (and `new_baudrate`), refusing an occupied address.

    Two modules at one unit id both answer every request and their replies collide on RS-485, so the
    new id is probed first; and since a module that missed those probes can still be there, the module
    answering at the new id after the reboot must have the serial read at the old id. Returns the
    identity seen at the new id, or None when a baud change on RTU leaves nothing to check at this rate.
    """
    check_unit(new_unit)
    try:
        before = await bus.read_identity(unit)
    except ModuleMiss as e:
        raise AddressCheckFailed(f"u{unit:03d} does not answer ({e}); nothing was changed") from None
    if new_unit != unit:
        there = await _answer_at(bus, new_unit)
        if there is not None:
            raise AddressCheckFailed(
                f"unit {new_unit} is already taken: {there} answers there. Nothing was changed; pick a free "
                f"unit id (`floorgate ptl scan` lists the used ones) or move that module first")
    new = await bus.set_comm(unit, unit_id=new_unit, baudrate=new_baudrate)
    out(f"u{unit:03d} (serial {before.serial!r}): stored unit id {new.unit_id}, {new.baudrate} baud; "
        "module rebooting")
    if new.baudrate != bus.settings.baudrate and bus.settings.transport == "rtu":
        out("baud rate changed: reconnect at the new rate to check it")
        return None
    deadline = asyncio.get_running_loop().time() + max(VERIFY_S, 10 * bus.settings.timeout_ms / 1000)
    while True:
        try:
            ident = await bus.read_identity(new.unit_id)
            break
        except NoResponse:
            if asyncio.get_running_loop().time() >= deadline:
                raise AddressCheckFailed(
                    f"nothing answers at u{new.unit_id:03d} after the reboot; `floorgate ptl scan` shows where "
                    f"the module with serial {before.serial!r} is") from None
        except ModuleMiss as e:
            raise AddressCheckFailed(f"after the reboot u{new.unit_id:03d} answers, but not as the moved "
                                     f"module: {e}") from None
    if (ident.serial, ident.model_number, ident.model_name) != (before.serial, before.model_number,
                                                                 before.model_name):
        raise AddressCheckFailed(
            f"u{new.unit_id:03d} answers with serial {ident.serial!r}, not {before.serial!r} (the module moved "
            f"from u{unit:03d}): another module that missed the check is at unit {new.unit_id} too, and on "
            "RS-485 their replies collide. Disconnect one of them and give it a free unit id")
    out(f"u{new.unit_id:03d} answers: serial {ident.serial!r}, the module moved from u{unit:03d}")
    return ident


def _port_problem(port: str, baudrate: int) -> str | None:
    """Why a serial port cannot be opened, from pyserial itself: pymodbus reports every failure to open
    one as a plain "not connected", which would blame the adapter for a port another process holds."""
    try:
        probe = serial.Serial(port, baudrate, exclusive=True)
    except serial.SerialException as e:
        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY) or "lock" in str(e):
            return (f"{port} is in use by another process (the gateway? a serial port has one master: "
                    f"stop it first): {e.strerror or e}")
        return f"cannot open {port}: {e.strerror or e} (is the adapter plugged in?)"
    except (OSError, ValueError) as e:
        return f"cannot open {port}: {e}"
    probe.close()
    return None


async def _with_bus(args: argparse.Namespace, work: Callable[[PtlBus], Awaitable[int]]) -> int:
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"floorgate ptl: {e}", file=sys.stderr)
        return 2
    async with PtlBus(settings) as bus:
        try:
            async with asyncio.timeout(max(1.0, 3 * settings.timeout_ms / 1000)):
                await bus.wait_until(lambda: bus.link_up)
        except TimeoutError:
            reason = bus.snapshot()["link_error"]
        else:
            try:
                return await work(bus)
            except (PtlError, ValueError) as e:
                print(f"floorgate ptl: {e}", file=sys.stderr)
                return 1
    # The bus is closed now, so probing the port cannot take it from the bus's own reconnect attempts.
    if settings.transport == "rtu":
        reason = _port_problem(str(settings.port), settings.baudrate) or reason
    print(f"floorgate ptl: cannot open the bus ({reason})", file=sys.stderr)
    return 1


def _cmd_scan(args: argparse.Namespace) -> int:
    async def work(bus: PtlBus) -> int:
        units = parse_units(args.units)
        odd: dict[int, str] = {}
        found = await scan(bus, units, odd=odd)
        print(f"{len(found)} module(s) answered out of {len(units)} unit ids tried"
              + (f"; {len(odd)} more unit id(s) answer, but not as a PTL node (see above)" if odd else ""))
        return 0 if found and not odd else 1

    return _run(args, work)


def _cmd_test(args: argparse.Namespace) -> int:
    async def work(bus: PtlBus) -> int:
        failed = await light_test(bus, parse_units(args.units), args.seconds)
        print("all modules lit" if not failed else f"no answer from units {', '.join(map(str, failed))}")
        return 1 if failed else 0

    return _run(args, work)


def _cmd_identify(args: argparse.Namespace) -> int:
    async def work(bus: PtlBus) -> int:
        await bus.identify(args.unit)
        print(f"u{args.unit:03d} blinks white for 5 s")
        return 0

    return _run(args, work)


def _cmd_set_address(args: argparse.Namespace) -> int:
    async def work(bus: PtlBus) -> int:
        await set_address(bus, args.unit, args.new_unit, args.new_baudrate)
        return 0

    return _run(args, work)


def _run(args: argparse.Namespace, work: Callable[[PtlBus], Awaitable[int]]) -> int:
    try:
        return asyncio.run(_with_bus(args, work))
    except KeyboardInterrupt:
        return 130


def _bus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", choices=("tcp", "rtu"), default="tcp")
    p.add_argument("--host", default="127.0.0.1", help="TCP: address of the PTL gateway or simulator")
    p.add_argument("--port", default="5020", help="TCP port, or serial device for rtu (e.g. /dev/ttyUSB0)")
    p.add_argument("--baudrate", type=int, default=115200, choices=BAUD_RATES)
    p.add_argument("--parity", choices=("N", "E", "O"), default="N")
    p.add_argument("--timeout-ms", type=int, default=100)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `ptl` (scan, test, identify, set-address) to the top-level `floorgate` subcommands."""
    ptl = sub.add_parser("ptl", help="technician tools for a PTL bus")
    cmds = ptl.add_subparsers(dest="ptl_command", required=True)
    p = cmds.add_parser("scan", help="find the modules on a bus and read their identity")
    _bus_options(p)
    p.add_argument("--units", default="1-247", help="unit ids to try (default 1-247)")
    p.set_defaults(func=_cmd_scan)
    p = cmds.add_parser("test", help="light every module in turn")
    _bus_options(p)
    p.add_argument("--units", default="1-32")
    p.add_argument("--seconds", type=float, default=1.0, help="how long each module stays lit")
    p.set_defaults(func=_cmd_test)
    p = cmds.add_parser("identify", help="blink one module white for 5 s")
    _bus_options(p)
    p.add_argument("--unit", type=int, required=True)
    p.set_defaults(func=_cmd_identify)
    p = cmds.add_parser("set-address", help="change a module's unit id (and baud rate); applied by a reboot")
    _bus_options(p)
    p.add_argument("--unit", type=int, required=True, help="current unit id")
    p.add_argument("--new-unit", type=int, required=True)
    p.add_argument("--new-baudrate", type=int, choices=BAUD_RATES, default=None)
    p.set_defaults(func=_cmd_set_address)
