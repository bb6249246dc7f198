"""A real input device through /dev/uinput, grabbed by the HID reader. Machines without uinput (most
containers, and this project's CI) skip it with the reason; the pipe tests cover the same code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drivers.scanner import HidScanner
from simulators.scanner import uinput_available
from tests.scanner.conftest import Collector, fast_backoff

AVAILABLE, WHY = uinput_available()


@pytest.mark.skipif(not AVAILABLE, reason=f"uinput not available: {WHY}")
@pytest.mark.parametrize("layout", ["us", "de"])
async def test_scans_from_a_uinput_device_are_grabbed_and_decoded(layout: str) -> None:
    from simulators.scanner import VirtualUinputScanner

    c = Collector()
    with VirtualUinputScanner(layout=layout) as ui:
        r = HidScanner("hid-u", ui.path, c.on_scan, c.on_status, layout=layout, backoff=fast_backoff())
        await r.start()
        try:
            await c.status(True)
            assert r.grabbed
            ui.scan_blocking("]C10109506000134352\x1d10Zy")
            s = await c.scan()
            assert (s.symbology, s.text) == ("]C1", "0109506000134352\x1d10Zy")
        finally:
            await r.stop()


@pytest.mark.skipif(not AVAILABLE, reason=f"uinput not available: {WHY}")
async def test_uinput_unplug_and_replug_behind_a_stable_link(tmp_path: Path) -> None:
    """Unplug destroys the input device (the grabbed reader gets ENODEV), replug makes a new one, possibly
    at another event node; the reader, configured with the stable link, comes back by itself."""
    from simulators.scanner import VirtualUinputScanner

    c = Collector()
    link = tmp_path / "usb-Floorgate_virtual_scanner-event-kbd"
    with VirtualUinputScanner(link=link) as ui:
        assert ui.path == str(link) and os.readlink(link) == ui.event_path
        r = HidScanner("hid-u", ui.path, c.on_scan, c.on_status, backoff=fast_backoff())
        await r.start()
        try:
            await c.status(True)
            ui.scan_blocking("BADGE-P1")
            assert (await c.scan()).text == "BADGE-P1"
            ui.unplug()
            assert not ui.plugged and not link.exists()
            await c.status(False)
            with pytest.raises(RuntimeError, match="unplugged"):
                ui.scan_blocking("LOST-1")
            ui.replug()
            assert ui.plugged and os.readlink(link) == ui.event_path
            await c.status(True)
            assert r.grabbed and r.opens == 2
            ui.scan_blocking("A-01-01")
            assert (await c.scan()).text == "A-01-01"
            assert c.scans.empty()
        finally:
            await r.stop()
