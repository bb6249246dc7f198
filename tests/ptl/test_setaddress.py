"""`floorgate ptl set-address` never puts two modules on one unit id, and the tools name a port held by
another process as such.

The commands run as a technician runs them (`_cmd_*` with parsed options, their own event loop in a
worker thread) against the simulator on this test's loop, over TCP loopback and over a pty pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tty
from collections.abc import Callable, Iterator

import pytest
import serial

from drivers.ptl import PtlBus
from drivers.ptl import cli as tech_cli
from firmware_stubs.ptl_node import registers as R
from simulators.ptl import PtlSimulator

from .conftest import LIMIT, settings_for


def tool_args(sim: PtlSimulator, **extra: object) -> argparse.Namespace:
    port = str(sim.port) if sim.transport == "tcp" else sim.path
    return argparse.Namespace(transport=sim.transport, host="127.0.0.1", port=port, baudrate=sim.baudrate,
                              parity="N", timeout_ms=100, **extra)


async def run_tool(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """The command's own asyncio.run in a thread, while this loop serves the simulated bus."""
    async with asyncio.timeout(LIMIT * 3):
        return await asyncio.to_thread(command, args)


def stored_unit(sim: PtlSimulator, node_index: int) -> int:
    node = sim.nodes[node_index]
    return node.read_holding(R.HR_UNIT_ID, 1, sim.now_ms())[0]


async def test_refuses_a_unit_id_another_module_answers_at(transport: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    async with PtlSimulator([2, 12], transport=transport) as sim:  # type: ignore[arg-type]
        boots = [n.boots for n in sim.nodes]
        rc = await run_tool(tech_cli._cmd_set_address, tool_args(sim, unit=12, new_unit=2, new_baudrate=None))
        out, err = capsys.readouterr()
        assert rc != 0
        assert "unit 2 is already taken" in err and "SIM-000001" in err and "nothing was changed" in err.lower()
        assert "answers: serial" not in out
        assert sim.units() == [2, 12] and [n.boots for n in sim.nodes] == boots
        assert stored_unit(sim, 1) == 12  # the comm block of the module at 12 was never written


async def test_moves_a_module_to_a_free_unit_and_checks_its_serial(transport: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    async with PtlSimulator([2, 12], transport=transport) as sim:  # type: ignore[arg-type]
        rc = await run_tool(tech_cli._cmd_set_address, tool_args(sim, unit=12, new_unit=7, new_baudrate=None))
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert "u007 answers: serial 'SIM-000002', the module moved from u012" in out
        assert sim.units() == [2, 7] and sim.module(7).serial == "SIM-000002"


async def test_fails_when_the_module_at_the_new_unit_is_not_the_one_moved(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A module that missed the probes (here: silent until the comm block is written) is found after the move."""
    async with PtlSimulator([2, 12]) as sim:
        sim.set_gone(2)
        sim.after_read(12, lambda: sim.set_gone(2, False), function_code=16)
        rc = await run_tool(tech_cli._cmd_set_address, tool_args(sim, unit=12, new_unit=2, new_baudrate=None))
        out, err = capsys.readouterr()
        assert rc != 0
        assert "u002 answers with serial 'SIM-000001', not 'SIM-000002'" in err and "collide" in err
        assert "u002 answers: serial" not in out


async def test_a_module_that_does_not_answer_is_not_touched() -> None:
    async with PtlSimulator([2]) as sim, PtlBus(settings_for(sim)) as bus:
        async with asyncio.timeout(LIMIT):
            await bus.wait_until(lambda: bus.link_up)
            with pytest.raises(tech_cli.AddressCheckFailed, match="u009 does not answer"):
                await tech_cli.set_address(bus, 9, 7)
            with pytest.raises(ValueError, match="outside 1-247"):
                await tech_cli.set_address(bus, 2, 0)  # never a probe of unit 0: that is the broadcast address
        assert sim.requests[0] == 0 and sim.units() == [2]


@contextlib.contextmanager
def port_held_by_another_process() -> Iterator[str]:
    """A pty opened and locked the way the gateway's pymodbus client (pyserial, exclusive=True) holds a port."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    holder = serial.Serial(path, 115200, exclusive=True)
    try:
        yield path
    finally:
        holder.close()
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def test_a_port_held_by_another_process_is_named_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    with port_held_by_another_process() as path:
        args = argparse.Namespace(transport="rtu", host="", port=path, baudrate=115200, parity="N",
                                  timeout_ms=20, units="1-2")
        assert tech_cli._cmd_scan(args) == 1
    err = capsys.readouterr().err
    assert f"{path} is in use by another process (the gateway?" in err
    assert "plugged in" not in err
