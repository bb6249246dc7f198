"""The HID reader against real kernel input_event records through a pipe at a path (read exactly as it
reads /dev/input/event*): layouts, GS, interpretation, and unplug/replug recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.scanner import HidScanner
from gateway.domain.barcode import interpret
from simulators.scanner import VirtualHidFifo, barcode_text
from tests.scanner.conftest import Collector, fast_backoff, master_data


async def started(sim: VirtualHidFifo, c: Collector, **kw: object) -> HidScanner:
    r = HidScanner("hid-1", str(sim.path), c.on_scan, c.on_status, backoff=fast_backoff(), **kw)  # type: ignore[arg-type]
    await r.start()
    await c.status(True)
    return r


@pytest.mark.parametrize("layout", ["us", "de"])
async def test_scans_through_a_pipe_of_input_events(tmp_path: Path, layout: str) -> None:
    c = Collector()
    codes = ["BADGE-P1", "A-01-01", "TOTE-ZY9", "Weird: yz YZ #'+*~<>|@{}[]\\ äöü ÄÖÜ ß €"]
    with VirtualHidFifo(tmp_path / "event-kbd", layout=layout) as sim:
        r = await started(sim, c, layout=layout)
        try:
            assert "not grabbed" in c.statuses[-1][1]  # a pipe cannot be grabbed; the status line says so
            for code in codes:
                await sim.scan(code)
            assert [(await c.scan()).text for _ in codes] == codes
        finally:
            await r.stop()


async def test_wrong_layout_shows_why_the_layout_setting_matters(tmp_path: Path) -> None:
    c = Collector()
    with VirtualHidFifo(tmp_path / "event-kbd", layout="de") as sim:
        r = await started(sim, c, layout="us")
        try:
            await sim.scan("Zy-1")
            assert (await c.scan()).text == "Yz/1"
        finally:
            await r.stop()


@pytest.mark.parametrize(("layout", "substitute"), [("us", ""), ("de", ""), ("us", "|")])
async def test_gs1_with_gs_as_ctrl_bracket_or_substitute(tmp_path: Path, layout: str, substitute: str) -> None:
    c = Collector()
    text = "]C1" + barcode_text("(01)09506000134352(10)L-1(17)270200", gs1=True)
    with VirtualHidFifo(tmp_path / "event-kbd", layout=layout, gs_substitute=substitute) as sim:
        r = await started(sim, c, layout=layout, gs_substitute=substitute)
        try:
            await sim.scan(text)
            s = await c.scan()
        finally:
            await r.stop()
    assert s.symbology == "]C1" and s.text == text[3:]
    b = interpret(s.text, symbology=s.symbology, md=master_data())
    assert (b.kind, b.sku, b.lot, b.expiry) == ("item", "SKU-LOT", "L-1", "2027-02-28")


async def test_too_long_through_the_pipe(tmp_path: Path) -> None:
    c = Collector()
    with VirtualHidFifo(tmp_path / "event-kbd") as sim:
        r = await started(sim, c)
        try:
            await sim.scan("7" * 5000)  # 5000 key strokes, far more than a pipe holds at once
            await sim.scan("NEXT")
            long, nxt = await c.scan(), await c.scan()
        finally:
            await r.stop()
    assert long.too_long and long.length == 5000 and nxt.text == "NEXT"


async def test_unplug_during_a_scan_and_replug_recovers_and_loses_no_later_scan(tmp_path: Path) -> None:
    c = Collector()
    sim = VirtualHidFifo(tmp_path / "usb-scanner-event-kbd")
    sim.plug()
    r = await started(sim, c)
    try:
        await sim.scan("HALF-A-BARC", enter=False)
        await sim.send(sim.records("X")[:30])  # and half an input_event record
        sim.unplug()
        assert "went away" in await c.status(False)
        sim.plug()
        await c.status(True)
        for i in range(10):
            await sim.scan(f"LATER-{i}")
        assert [(await c.scan()).text for _ in range(10)] == [f"LATER-{i}" for i in range(10)]
    finally:
        await r.stop()
        sim.close()
    assert [online for online, _ in c.statuses] == [True, False, True, False]


async def test_missing_device_is_reported_and_picked_up(tmp_path: Path) -> None:
    c = Collector()
    sim = VirtualHidFifo(tmp_path / "later")
    r = HidScanner("hid-1", str(sim.path), c.on_scan, c.on_status, backoff=fast_backoff())
    await r.start()
    try:
        assert "cannot open" in await c.status(False)
        sim.plug()
        await c.status(True)
        await sim.scan("OK")
        assert (await c.scan()).text == "OK"
    finally:
        await r.stop()
        sim.close()


async def test_hid_has_no_feedback_channel(tmp_path: Path) -> None:
    c = Collector()
    with VirtualHidFifo(tmp_path / "event-kbd") as sim:
        r = await started(sim, c)
        try:
            assert r.write(b"\x07") is False
        finally:
            await r.stop()


async def test_readers_are_made_from_the_config_section(tmp_path: Path) -> None:
    from drivers.scanner import SerialScanner, make_reader
    from gateway.config import parse_config

    cfg = parse_config({"scanners": [
        {"id": "scan-1", "port": "/dev/ttyACM0", "terminator": "crlf"},
        {"id": "scan-2", "kind": "hid", "path": str(tmp_path / "ev"), "layout": "de", "gs_substitute": "|"},
    ]})
    c = Collector()
    serial_reader = make_reader(cfg.scanners[0], c.on_scan)
    assert isinstance(serial_reader, SerialScanner) and serial_reader.framer.terminator == "crlf"
    hid = make_reader(cfg.scanners[1], c.on_scan, c.on_status, backoff=fast_backoff())
    assert isinstance(hid, HidScanner) and hid.decoder.layout.name == "de"
    with VirtualHidFifo(tmp_path / "ev", layout="de", gs_substitute="|") as sim:
        await hid.start()
        try:
            await c.status(True)
            await sim.scan("A\x1dB")
            assert (await c.scan()).text == "A\x1dB"
        finally:
            await hid.stop()


async def test_a_path_that_is_not_a_device_is_a_clear_error(tmp_path: Path) -> None:
    c = Collector()
    (tmp_path / "notes.txt").write_text("hello")
    r = HidScanner("hid-1", str(tmp_path / "notes.txt"), c.on_scan, c.on_status, backoff=fast_backoff())
    await r.start()
    try:
        detail = await c.status(False)
        assert "not an input device" in detail
    finally:
        await r.stop()
