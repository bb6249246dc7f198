"""`floorgate sim scanner ...` driven as a person would: a separate process, barcodes on stdin, read by
the real readers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from drivers.scanner import HidScanner, SerialScanner
from drivers.scanner.reader import ReconnectingReader
from simulators.scanner.encode import hri_to_element_string, unescape
from tests.scanner.conftest import WAIT_S, Collector, fast_backoff

ROOT = Path(__file__).resolve().parents[2]
MAIN = ("import argparse, sys; from simulators.scanner.cli import add_parser; "
        "p = argparse.ArgumentParser(prog='floorgate sim'); add_parser(p.add_subparsers()); "
        "a = p.parse_args(); sys.exit(a.func(a))")


async def run_sim(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", MAIN, "scanner", *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def drive(proc: asyncio.subprocess.Process, reader: ReconnectingReader, c: Collector, lines: bytes) -> list[str]:
    assert proc.stdin is not None and proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
        assert b"scanner on" in first
        await reader.start()
        await c.status(True)
        proc.stdin.write(lines)
        await proc.stdin.drain()
        proc.stdin.close()
        return [(await c.scan()).text for _ in lines.splitlines()]
    finally:
        await reader.stop()
        if proc.returncode is None:
            await asyncio.wait_for(proc.communicate(), WAIT_S)


async def test_serial_simulator_cli(tmp_path: Path) -> None:
    link = tmp_path / "scan-1"
    proc = await run_sim("serial", "--link", str(link), "--aim", "]C1", "--gs1", "--delay", "0", "--hold", "0.2")
    c = Collector()
    r = SerialScanner("scan-1", str(link), c.on_scan, c.on_status, backoff=fast_backoff())
    got = await drive(proc, r, c, b"(01)09506000134352(10)L1(21)S\nBADGE-P1\n")
    assert got == ["0109506000134352" + "10L1\x1d21S", "BADGE-P1"]
    assert proc.returncode == 0


async def test_hid_simulator_cli_with_a_pipe(tmp_path: Path) -> None:
    path = tmp_path / "hid-1"
    proc = await run_sim("hid", "--path", str(path), "--layout", "de", "--delay", "0", "--hold", "0.2")
    c = Collector()
    r = HidScanner("hid-1", str(path), c.on_scan, c.on_status, layout="de", backoff=fast_backoff())
    got = await drive(proc, r, c, b"Zy-1<GS>\\x41\n")
    assert got == ["Zy-1\x1dA"]
    assert proc.returncode == 0


async def test_uinput_unavailable_is_a_clear_error() -> None:
    from simulators.scanner import uinput_available

    if uinput_available()[0]:
        pytest.skip("uinput is available here")
    proc = await run_sim("hid", "--uinput", "X")
    _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 2 and b"cannot use uinput" in err and b"--path" in err


def test_notation() -> None:
    assert unescape("A<GS>B\\x1dC\\\\") == "A\x1dB\x1dC\\"
    assert hri_to_element_string("(01)09506000134352(10)L1(17)261231") == "0109506000134352" + "10L1\x1d17261231"
    with pytest.raises(ValueError, match="bracketed"):
        hri_to_element_string("(01)0950(")
