"""The simulator's own behaviour, its view and its CLI, and the technician tools against it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from drivers.ptl import Colour, ModuleState, Pattern, PtlBus
from drivers.ptl import cli as tech_cli
from gateway.clock import ManualClock
from simulators.ptl import PtlSimulator
from simulators.ptl import cli as sim_cli
from simulators.ptl.view import render

from .conftest import LIMIT, settings_for

ROOT = Path(__file__).resolve().parents[2]


async def test_done_turns_off_after_one_second_on_the_simulators_clock() -> None:
    clock = ManualClock()
    async with PtlSimulator(range(1, 3), clock=clock) as sim, PtlBus(settings_for(sim)) as bus:
        bus.set_state(2, ModuleState.done())
        async with asyncio.timeout(LIMIT):
            await bus.wait_shown(2)
        node = sim.module(2)
        assert node.mode == 4
        clock.advance(0.999)
        sim.tick()
        assert node.mode == 4
        clock.advance(0.001)
        sim.tick()
        assert node.mode == 0


def test_view_shows_lights_colour_quantity_pattern() -> None:
    clock = ManualClock()
    sim = PtlSimulator(range(1, 4), clock=clock)
    sim.module(2).write_holding(0, [1, 12, 2, 1, 4711], sim.now_ms())
    sim.press(2, "confirm")
    sim.set_gone(3)
    plain = render(sim.nodes, 0, {u: sim.faults(u) for u in sim.units()}, colour=False)
    lines = plain.splitlines()
    assert lines[0].startswith("u001 [    ] off")
    assert lines[1].startswith("u002 [  12] green   1Hz    job   t=4711")
    assert lines[1].endswith("n=1     CP")  # confirm latched, power-up not yet cleared
    assert lines[2].endswith("GONE")
    coloured = render(sim.nodes, 0)
    assert "\x1b[42;97m[  12]\x1b[0m" in coloured
    assert "\x1b[42" not in render(sim.nodes, 600)  # the 1 Hz blink is dark in the second half-second


def test_cli_commands_and_bad_input() -> None:
    sim = PtlSimulator(range(1, 4))
    sim.module(1).write_holding(0, [1, 5, 2, 0, 9], 0)
    ex = sim_cli.execute
    assert ex(sim, "press 1 confirm").text == "u001 confirm"
    assert ex(sim, "adjust 1 -2").text == "u001 adjusted -2"
    assert sim.module(1).display_text(0) == "   3"
    assert "ignored" in ex(sim, "press 2 shortage").text
    assert ex(sim, "gone 3").text == "u003 gone" and sim.faults(3).gone
    assert ex(sim, "back 3").text == "u003 back" and not sim.faults(3).gone
    assert ex(sim, "slow 2 0.5").text == "u002 replies after 0.5 s" and sim.faults(2).delay_s == 0.5
    assert ex(sim, "exception 2 4").text == "u002 exception 4" and sim.faults(2).exception == 4
    assert ex(sim, "exception 2 off").text == "u002 exception off"
    assert "RTU only" in ex(sim, "garbage 2 on").text
    assert "running RTU" in ex(sim, "noise 8").text
    assert ex(sim, "reboot 1").text == "u001 rebooted" and sim.module(1).mode == 0
    assert ex(sim, "fault 2 on").text == "u002 fault bit on" and sim.module(2).status() & 0x100
    assert ex(sim, "add 9").text == "u009 added" and 9 in sim.units()
    assert "already" in ex(sim, "add 9").text
    assert ex(sim, "remove 9").text == "u009 removed"
    assert "no simulated module" in ex(sim, "press 42 confirm").text
    assert "unknown" in ex(sim, "press 1 enter").text
    assert "missing argument" in ex(sim, "adjust 1").text
    assert "which unit" in ex(sim, "press").text
    assert "invalid literal" in ex(sim, "press x").text
    assert "unknown command" in ex(sim, "dance 1").text
    assert "press U" in ex(sim, "help").text
    assert ex(sim, "quit").quit and ex(sim, "").text == ""


def test_unit_ranges() -> None:
    assert sim_cli.parse_units("1-3,7, 9-10") == [1, 2, 3, 7, 9, 10]
    assert tech_cli.parse_units("5") == [5]
    for bad in ("0-3", "5-2", "a-b", "", "1-300"):
        with pytest.raises(ValueError):
            sim_cli.parse_units(bad)
        with pytest.raises(ValueError):
            tech_cli.parse_units(bad)


def test_parsers_hook_into_a_floorgate_parser() -> None:
    p = argparse.ArgumentParser(prog="floorgate")
    sub = p.add_subparsers(dest="command", required=True)
    tech_cli.add_parser(sub)
    sim = sub.add_parser("sim").add_subparsers(dest="sim_command", required=True)
    sim_cli.add_parser(sim)
    a = p.parse_args(["sim", "ptl", "--transport", "rtu", "--modules", "1-4", "--no-view"])
    assert (a.transport, a.modules, a.no_view, a.func) == ("rtu", "1-4", True, sim_cli._run)
    a = p.parse_args(["ptl", "scan", "--port", "5021", "--units", "1-3"])
    assert (a.port, a.units, a.func) == ("5021", "1-3", tech_cli._cmd_scan)
    a = p.parse_args(["ptl", "set-address", "--unit", "3", "--new-unit", "7"])
    assert (a.unit, a.new_unit, a.func) == (3, 7, tech_cli._cmd_set_address)
    a = p.parse_args(["ptl", "test", "--transport", "rtu", "--port", "/dev/ttyUSB0"])
    assert tech_cli.settings_from_args(a).port == "/dev/ttyUSB0"
    with pytest.raises(ValueError, match="TCP port"):
        tech_cli.settings_from_args(p.parse_args(["ptl", "scan", "--port", "/dev/ttyUSB0"]))


def test_technician_command_without_a_bus_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(transport="rtu", host="", port="/nonexistent/ttyUSB7", baudrate=115200, parity="N",
                              timeout_ms=20, units="1-2")
    assert tech_cli._cmd_scan(args) == 1
    assert "cannot open" in capsys.readouterr().err


async def test_scan_and_light_test_against_the_simulator() -> None:
    async with PtlSimulator([2, 5]) as sim, PtlBus(settings_for(sim, timeout_ms=20)) as bus:
        async with asyncio.timeout(LIMIT):
            await bus.wait_until(lambda: bus.link_up)
        lines: list[str] = []
        found = await tech_cli.scan(bus, [1, 2, 3, 4, 5], lines.append)
        assert sorted(found) == [2, 5] and found[5].serial == "SIM-000002"
        assert len(lines) == 2 and lines[0].startswith("u002  model 4201")
        failed = await tech_cli.light_test(bus, [2, 3, 5], 0.0, lines.append)
        assert failed == [3]
        assert sim.module(2).mode == 0 and sim.requests[2] >= 3 and sim.served[5] >= 3
        assert "u003  NO ANSWER" in lines


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_scan_shows_a_unit_that_answers_but_not_as_a_node(transport: Literal["tcp", "rtu"]) -> None:
    """An exception reply (another register map) or a garbled one (two modules at one address) is still
    something at that address. `scan` left it out, as if the address were free."""
    async with PtlSimulator([1, 2, 3], transport=transport) as sim, \
            PtlBus(settings_for(sim, timeout_ms=20, misses_offline=1)) as bus:
        if transport == "tcp":
            sim.set_exception(2, 2)
        else:
            sim.set_corrupt(2)
        async with asyncio.timeout(LIMIT):
            await bus.wait_until(lambda: bus.link_up)
        lines: list[str] = []
        odd: dict[int, str] = {}
        found = await tech_cli.scan(bus, [1, 2, 3, 4], lines.append, odd=odd)
        assert sorted(found) == [1, 3] and list(odd) == [2]
        assert lines[1].startswith("u002  something answers, but not as a Floorgate PTL node"), lines
        assert ("illegal data address" if transport == "tcp" else "CRC error") in lines[1]
        assert len(lines) == 3  # u004: silence, a free address


def test_sim_cli_runs_and_quits_on_stdin() -> None:
    code = ("import argparse, sys; from simulators.ptl import cli; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(); cli.add_parser(s); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    out = subprocess.run([sys.executable, "-c", code, "ptl", "--port", "0", "--modules", "1-3", "--no-view"],
                         input="help\npress 1 confirm\nbogus\nquit\n", capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "3 modules on tcp 127.0.0.1:" in out.stdout
    assert "ignored" in out.stdout and "unknown command 'bogus'" in out.stdout and "bye" in out.stdout


def test_set_job_values_from_the_public_api() -> None:
    s = ModuleState.job(3, Colour.GREEN, Pattern.STEADY, 17)
    assert (s.mode, s.qty, s.colour, s.pattern, s.token) == (1, 3, Colour.GREEN, Pattern.STEADY, 17)


def test_the_simulator_runs_without_a_stdin_to_read_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """As a service (stdin /dev/null, which epoll cannot watch) it used to die with a PermissionError; now it
    serves without commands until SIGTERM, and removes its RTU link on the way out."""
    link = tmp_path / "ptl-bus"
    floorgate = Path(sys.executable).parent / "floorgate"
    with open(os.devnull) as devnull:
        proc = subprocess.Popen([str(floorgate), "sim", "ptl", "--transport", "rtu", "--modules", "1-2",
                                 "--no-view", "--link", str(link)], stdin=devnull, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert "PTL simulator: 2 modules" in lines[0] and "no commands" in lines[1], lines
        assert link.is_symlink()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err, err
        assert not link.exists() and not link.is_symlink()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
