"""A real input device through /dev/uinput, grabbed by the HID reader. Machines without uinput (most
containers, and this project's CI) skip it with the reason; the pipe tests cover the same code."""

from __future__ import annotations

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
