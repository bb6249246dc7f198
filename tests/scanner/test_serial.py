"""The serial reader against real bytes through a pseudo-terminal: scans, feedback, and unplug/replug
(the pty closed and re-created behind the same path), which the reader must survive by itself."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from drivers.scanner import SerialScanner
from gateway.domain.barcode import escape_raw, interpret
from simulators.scanner import VirtualSerialScanner, barcode_text
from tests.scanner.conftest import Collector, fast_backoff, master_data


async def started(sim: VirtualSerialScanner, c: Collector, **kw: object) -> SerialScanner:
    r = SerialScanner("scan-1", sim.path, c.on_scan, c.on_status, backoff=fast_backoff(), **kw)  # type: ignore[arg-type]
    await r.start()
    await c.status(True)
    return r


@pytest.mark.parametrize("terminator", ["any", "cr", "lf", "crlf"])
async def test_scans_through_a_pty_with_each_terminator(tmp_path: Path, terminator: str) -> None:
    c = Collector()
    sent_with = "crlf" if terminator == "any" else terminator
    with VirtualSerialScanner(tmp_path / "scan", terminator=sent_with) as sim:
        r = await started(sim, c, terminator=terminator)
        try:
            for code in ("BADGE-P1", "A-01-01", "4006381333931"):
                await sim.scan(code)
            assert [(await c.scan()).text for _ in range(3)] == ["BADGE-P1", "A-01-01", "4006381333931"]
        finally:
            await r.stop()
    assert c.scans.empty()


async def test_any_terminator_accepts_mixed_endings_on_the_wire(tmp_path: Path) -> None:
    c = Collector()
    with VirtualSerialScanner(tmp_path / "scan") as sim:
        r = await started(sim, c)
        try:
            await sim.send(b"ONE\rTWO\nTHREE\r\n\r\n")
            assert [(await c.scan()).text for _ in range(3)] == ["ONE", "TWO", "THREE"]
        finally:
            await r.stop()


async def test_gs1_scan_with_aim_is_interpreted(tmp_path: Path) -> None:
    c = Collector()
    with VirtualSerialScanner(tmp_path / "scan", aim="]C1") as sim:
        r = await started(sim, c)
        try:
            await sim.scan(barcode_text("(01)09506000134352(10)LOT1(17)261200(21)S-9", gs1=True))
            await sim.scan("]C1 is not on this one", aim="")
            s1, s2 = await c.scan(), await c.scan()
        finally:
            await r.stop()
    assert s1.symbology == "]C1" and "\x1d" in s1.text and s1.t > 0
    b = interpret(s1.text, symbology=s1.symbology, md=master_data())
    assert (b.kind, b.sku, b.lot, b.expiry, b.serial) == ("item", "SKU-LOT", "LOT1", "2026-12-31", "S-9")
    assert escape_raw(s1.raw) == "]C1010950600013435210LOT1\\x1d1726120021S-9"
    assert s2.symbology == "]C1" and s2.text == " is not on this one"


async def test_too_long_scan_is_rejected_and_the_next_scan_is_fine(tmp_path: Path) -> None:
    c = Collector()
    with VirtualSerialScanner(tmp_path / "scan") as sim:
        r = await started(sim, c)
        try:
            await sim.send(b"9" * 20_000 + b"\r\n")
            await sim.scan("AFTER")
            long, after = await c.scan(), await c.scan()
        finally:
            await r.stop()
    assert long.too_long and long.length == 20_000 and long.text == ""
    assert interpret(long.text, symbology=long.symbology, too_long=long.too_long).error == "invalid_barcode"
    assert after.text == "AFTER" and not after.too_long


async def test_feedback_bytes_reach_the_scanner(tmp_path: Path) -> None:
    c = Collector()
    with VirtualSerialScanner(tmp_path / "scan") as sim:
        r = await started(sim, c)
        try:
            assert r.write(bytes.fromhex("1b07"))
            assert await asyncio.wait_for(sim.wait_feedback(2), 10) == b"\x1b\x07"
        finally:
            await r.stop()
    assert not r.write(b"\x07")  # stopped: nothing to write to, and no exception


async def test_unplug_during_a_scan_and_replug_recovers_and_loses_no_later_scan(tmp_path: Path) -> None:
    c = Collector()
    sim = VirtualSerialScanner(tmp_path / "by-id-scanner")
    sim.plug()
    r = await started(sim, c)
    try:
        first_target = sim.slave_path
        await sim.send(b"HALF-A-BARC")  # the cable is pulled mid-scan
        sim.unplug()
        detail = await c.status(False)
        assert "went away" in detail and not r.online
        holder = os.openpty()  # take the old pts number so the new device is elsewhere, as after re-enumeration
        try:
            sim.plug()
            detail = await c.status(True)
        finally:
            os.close(holder[0])
            os.close(holder[1])
        assert sim.slave_path != first_target and sim.slave_path in detail
        for i in range(20):
            await sim.scan(f"LATER-{i}")
        got = [(await c.scan()).text for _ in range(20)]
        assert got == [f"LATER-{i}" for i in range(20)]  # the half scan was dropped, nothing merged or lost
        assert r.opens == 2
    finally:
        await r.stop()
        sim.close()
    assert [online for online, _ in c.statuses] == [True, False, True, False]


async def test_missing_port_is_reported_once_and_picked_up_when_it_appears(tmp_path: Path) -> None:
    c = Collector()
    sim = VirtualSerialScanner(tmp_path / "not-yet")
    r = SerialScanner("scan-1", sim.path, c.on_scan, c.on_status, backoff=fast_backoff())
    await r.start()
    try:
        detail = await c.status(False)
        assert "cannot open" in detail and "not-yet" in detail
        await asyncio.sleep(0.2)  # several retries happen meanwhile; the outage stays one report
        assert len(c.statuses) == 1
        sim.plug()
        await c.status(True)
        await sim.scan("HELLO")
        assert (await c.scan()).text == "HELLO"
    finally:
        await r.stop()
        sim.close()


async def test_stop_is_idempotent_and_start_twice_is_refused(tmp_path: Path) -> None:
    c = Collector()
    with VirtualSerialScanner(tmp_path / "scan") as sim:
        r = await started(sim, c)
        with pytest.raises(RuntimeError, match="already started"):
            await r.start()
        await r.stop()
        await r.stop()
    assert c.statuses[-1] == (False, "stopped")


async def test_a_failing_scan_callback_does_not_stop_the_reader(tmp_path: Path) -> None:
    c = Collector()

    def picky(scan: object) -> None:
        if getattr(scan, "text", "") == "BOOM":
            raise RuntimeError("consumer bug")
        c.on_scan(scan)  # type: ignore[arg-type]

    with VirtualSerialScanner(tmp_path / "scan") as sim:
        r = SerialScanner("scan-1", sim.path, picky, c.on_status, backoff=fast_backoff())
        await r.start()
        try:
            await c.status(True)
            await sim.scan("BOOM")
            await sim.scan("FINE")
            assert (await c.scan()).text == "FINE"
        finally:
            await r.stop()


async def test_the_loop_keeps_running_while_a_scanner_is_away(tmp_path: Path) -> None:
    c = Collector()
    r = SerialScanner("scan-1", str(tmp_path / "absent"), c.on_scan, c.on_status, backoff=fast_backoff())
    await r.start()
    try:
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        assert ticks == 20 and not r.online
    finally:
        await r.stop()


async def test_a_path_that_is_not_a_serial_port_is_a_clear_error(tmp_path: Path) -> None:
    c = Collector()
    (tmp_path / "notes.txt").write_text("hello")
    r = SerialScanner("scan-1", str(tmp_path / "notes.txt"), c.on_scan, c.on_status, backoff=fast_backoff())
    await r.start()
    try:
        detail = await c.status(False)
        assert detail.startswith(f"cannot open {tmp_path / 'notes.txt'}:")
        assert r.task_alive
    finally:
        await r.stop()
