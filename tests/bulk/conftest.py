from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.journal import Journal
from gateway.service import FloorService
from tests.bulk.test_bulk_resume import open_service
from tests.sync.conftest import broker

__all__ = ["broker"]


@pytest.fixture
async def opened(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[Journal, FloorService]]:
    """A journal and a floor service on a fresh file, without the hub link: the applier is driven by hand."""
    j, s = await open_service(tmp_path, clock)
    try:
        yield j, s
    finally:
        await j.close()
