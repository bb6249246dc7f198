"""Every page renders on a PDA and a desktop: the screenshot scenario (tests/web/shoot.py, which also makes
docs/screenshots) runs here into a temporary directory."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.web.shoot import shoot

pytestmark = pytest.mark.timeout(150)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


async def test_screenshots_of_every_page_at_pda_and_desktop_size(tmp_path: Path) -> None:
    files = {p.name: p for p in await shoot(tmp_path / "shots")}
    for page in ("pda", "pack", "supervisor", "technician"):
        assert png_size(files[f"{page}-360x640.png"])[0] == 360
        assert png_size(files[f"{page}-1280x800.png"])[0] == 1280
    assert png_size(files["pda-zh-360x640.png"]) == (360, 640)
    assert png_size(files["pda-login-360x640.png"]) == (360, 640)
