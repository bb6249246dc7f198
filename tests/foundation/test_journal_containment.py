"""A bad change, a failing commit or a closing journal never leaves a caller waiting for ever nor stops the writer.
The writer is one task: if it died, every later commit (and every scan's feedback) would wait for good."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.journal import Journal, JournalError, StorageFull
from gateway.journal.store import JournalUnavailable

SAFETY_S = 30


def change(order_id: Any = None, pad: int = 0) -> Change:
    ch = Change()
    ch.emit("test.event", {"pad": "x" * pad}, order_id)
    return ch


async def opened(tmp_path: Path) -> Journal:
    return await Journal.open(tmp_path / "j.db", site="dc1", gateway="zone-a", clock=ManualClock())


async def test_an_event_with_a_bad_order_id_is_refused_to_its_caller_alone(tmp_path: Path) -> None:
    j = await opened(tmp_path)
    try:
        first = j.submit(change("O-1"))
        with pytest.raises(TypeError, match="order_id"):
            j.submit(change(42))  # a bug upstream: an id that is not text
        last = j.submit(change("O-2"))
        async with asyncio.timeout(SAFETY_S):
            assert [e.seq for e in await first] == [1]
            assert [e.seq for e in await last] == [2]  # the refused change took no seq: no gap
        assert j.writer_alive
        assert [r.seq for r in await j.read_events(1)] == [1, 2]
    finally:
        await j.close()


async def test_a_fault_while_preparing_a_batch_fails_that_batch_and_the_writer_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = await opened(tmp_path)
    failures: list[JournalError] = []
    j.on_failure(failures.append)
    try:
        def broken(drafts: list[Any]) -> list[Any]:
            raise RuntimeError("a bug in building the rows")
        monkeypatch.setattr(j, "_envelopes", broken)
        futs = [j.submit(change(f"O-{i}")) for i in range(3)]
        async with asyncio.timeout(SAFETY_S):
            results = await asyncio.gather(*futs, return_exceptions=True)
            assert all(isinstance(r, JournalError) for r in results), results
            await j.quiet()
        assert len(failures) == 1 and "a bug in building the rows" in str(failures[0])
        assert j.writer_alive
        monkeypatch.undo()
        j.reset_after_failure()  # the owner has rebuilt its state from what is committed
        async with asyncio.timeout(SAFETY_S):
            assert [e.seq for e in await j.submit(change("O-9"))] == [1]
    finally:
        await j.close()


async def test_a_failed_commit_with_a_job_nobody_waits_for_any_more_behind_it(tmp_path: Path) -> None:
    j = await opened(tmp_path)
    try:
        await j.submit(change())
        pages = next(iter(await j.reader.execute_fetchall("PRAGMA page_count")))[0]
        await j._conn.execute(f"PRAGMA max_page_count={pages}")  # the disk is now full
        big = j.submit(change(pad=200_000))
        job = asyncio.ensure_future(j.barrier())
        await asyncio.sleep(0)  # the barrier's job is queued behind the big change
        behind = j.submit(change())
        job.cancel()  # its caller gave up waiting (a timeout)
        async with asyncio.timeout(SAFETY_S):
            results = await asyncio.gather(big, behind, return_exceptions=True)
            await j.quiet()
        assert all(isinstance(r, StorageFull) for r in results), results
        assert j.writer_alive
    finally:
        await j.close()


async def test_a_change_submitted_while_the_journal_closes_is_refused_not_left_waiting(tmp_path: Path) -> None:
    j = await opened(tmp_path)
    pending = j.submit(change())
    closing = asyncio.ensure_future(j.close())
    await asyncio.sleep(0)  # close() has queued the writer's stop marker and waits for the writer
    with pytest.raises(JournalUnavailable):
        j.submit(change())
    with pytest.raises(JournalUnavailable):
        await j.barrier()
    async with asyncio.timeout(SAFETY_S):
        await closing
        assert [e.seq for e in await pending] == [1]  # what came before the close is committed
