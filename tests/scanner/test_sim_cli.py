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
from simulators.scanner.hid_sim import uinput_available
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


async def said(proc: asyncio.subprocess.Process, text: str) -> str:
    """Read the simulator's stdout up to the line that contains `text`."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), WAIT_S)).decode()
        assert line, f"the simulator ended before saying {text!r}"
        if text in line:
            return line


@pytest.mark.parametrize("kind", ["serial", "hid"])
async def test_technician_unplugs_and_replugs_from_the_cli(tmp_path: Path, kind: str) -> None:
    """`<UNPLUG>` and `<REPLUG>` typed into a running simulator: the real reader sees the device go away
    and come back at the same path, a barcode "scanned" while unplugged is refused by the simulator, and
    the scan after the replug arrives whole."""
    path = tmp_path / "dev-1"
    c = Collector()
    r: ReconnectingReader
    pace = ("--delay", "0", "--interval", "0", "--hold", "0")
    if kind == "serial":
        proc = await run_sim("serial", "--link", str(path), *pace)
        r = SerialScanner("scan-1", str(path), c.on_scan, c.on_status, backoff=fast_backoff())
    else:
        proc = await run_sim("hid", "--path", str(path), *pace)
        r = HidScanner("hid-1", str(path), c.on_scan, c.on_status, backoff=fast_backoff())
    assert proc.stdin is not None
    try:
        await said(proc, "scanner on")
        await r.start()
        await c.status(True)

        async def type_line(line: str) -> None:
            assert proc.stdin is not None
            proc.stdin.write(line.encode() + b"\n")
            await proc.stdin.drain()

        await type_line("BADGE-P1")
        assert (await c.scan()).text == "BADGE-P1"
        await type_line("<UNPLUG>")
        await said(proc, "unplugged")
        await c.status(False)
        assert not path.exists()
        await type_line("LOST-1")  # nothing is sent: the scanner has no cable
        await type_line("<replug>")
        assert "scanner on" in await said(proc, "plugged in again")
        await c.status(True)
        await type_line("A-01-01")
        assert (await c.scan()).text == "A-01-01"
        proc.stdin.close()
        _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0
        assert b"not scanned" in err and b"LOST-1" in err
        assert c.scans.empty()
        assert r.opens == 2
    finally:
        await r.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.skipif(not uinput_available()[0], reason=f"uinput not available: {uinput_available()[1]}")
async def test_uinput_simulator_cli_unplug_and_replug(tmp_path: Path) -> None:
    link = tmp_path / "by-id-kbd"
    proc = await run_sim("hid", "--uinput", "--link", str(link), "--delay", "0", "--interval", "0", "--hold", "0")
    c = Collector()
    r = HidScanner("hid-u", str(link), c.on_scan, c.on_status, backoff=fast_backoff())
    assert proc.stdin is not None
    try:
        await said(proc, "scanner on")
        await r.start()
        await c.status(True)
        proc.stdin.write(b"<UNPLUG>\n")
        await proc.stdin.drain()
        await c.status(False)
        proc.stdin.write(b"<REPLUG>\n")
        await proc.stdin.drain()
        await c.status(True)
        assert r.grabbed
        proc.stdin.write(b"A-01-01\n")
        await proc.stdin.drain()
        assert (await c.scan()).text == "A-01-01"
        proc.stdin.close()
        await asyncio.wait_for(proc.communicate(), WAIT_S)
        assert proc.returncode == 0
    finally:
        await r.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


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
