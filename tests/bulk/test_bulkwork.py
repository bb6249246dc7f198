"""The bulk worker: parts parsed and checked in a process of its own at the lowest priority, with the same
answers as checking on the loop; a worker that dies costs a retry, never the set."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from gateway import bulk, bulkwork
from gateway.bulkwork import StreamError, Worker, WorkerLost
from gateway.clock import ManualClock
from gateway.domain.change import Change
from gateway.domain.floor import MasterData
from gateway.domain.masterdata import Outcome, apply_checked, apply_items
from tests.bulk.dying import die_mid_send
from tests.bulk.test_bulk_resume import command, open_service
from tests.bulk.test_bulk_retry import N, stored_replace
from tests.conftest import SKUS, until


@pytest.mark.parametrize(("payload", "message"), [
    (b"", "not JSON: empty payload"),
    (b"   ", "not JSON: empty payload"),
    (b"[1, 2]", "the payload must be a JSON object"),
    (b'{"skus": [', "not JSON"),
    (b'{"w": NaN}', "not JSON"),
    (b'{"w": Infinity}', "not JSON"),
    (b'{"w": -1e999}', "out of range"),
    (b"\xff\xfe{}", "not JSON"),
])
def test_a_part_that_is_not_a_json_object_is_refused_with_a_reason(payload: bytes, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        bulkwork.load_object(payload)


def test_an_integer_beyond_64_bits_is_still_json() -> None:
    assert bulkwork.load_object(b'{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}


def test_receive_gives_the_envelope_the_counts_and_the_stored_form() -> None:
    body = {"cmd_id": "c1", "sync_id": "s", "part": 1, "parts": 2, "mode": "replace", "skus": [{"sku": "A"}] * 3,
            "locations": [], "cartons": {"oops": 1}}
    payload = json.dumps(body).encode()
    head, counts, stored = bulkwork.receive(payload, ("skus", "locations", "cartons", "orders"))
    assert head == {"cmd_id": "c1", "sync_id": "s", "part": 1, "parts": 2, "mode": "replace", "skus": [],
                    "locations": [], "cartons": {}}  # a list's type is kept for validation, a map stays a map
    assert counts == {"skus": 3, "locations": 0}
    assert zlib.decompress(stored) == payload and bulkwork.expand(stored) == payload
    assert bulkwork.expand(payload.decode()) == payload  # parts stored as text before compression still read


def test_checking_ahead_gives_the_answers_of_checking_on_the_loop() -> None:
    items: list[Any] = [{"sku": "A", "gtins": ["4006381333931"]}, {"sku": "B", "gtins": ["4006381333932"]},
                        {"gtins": []}, {"sku": "C", "gtins": ["4006381333931"]}, {"sku": "D", "extra": 1},
                        {"sku": "E", "unit_weight_g": -1}, "not an object", {"sku": "F", "description": "ünï \" \\"}]
    on_loop, loop_change = Outcome(), Change()
    apply_items(MasterData(), 2, loop_change, "skus", items, 1, 10, on_loop)
    ahead, ahead_change = Outcome(), Change()
    checked = pickle.loads(pickle.dumps(bulkwork.check_run("skus", 10, items)))  # as it crosses the pipe
    apply_checked(MasterData(), 2, ahead_change, "skus", checked, 1, ahead)
    assert ahead.rejected == on_loop.rejected and ahead.applied == on_loop.applied == 3  # A, D, F
    assert [(g, k, i, json.loads(str(d))) for g, k, i, d in ahead_change.masterdata] == loop_change.masterdata
    assert [r["index"] for r in on_loop.rejected] == [11, 12, 13, 15, 16]  # 13: C has A's GTIN (the floor's check)


def test_split_keeps_each_items_index() -> None:
    payload = json.dumps({"orders": [{"order_id": f"O-{i}"} for i in range(45)]}).encode()
    head, runs = bulkwork.split(zlib.compress(payload), ("orders",), 20)
    assert head == {"orders": []}
    assert [(start, len(items)) for start, items in runs["orders"]] == [(0, 20), (20, 20), (40, 5)]
    assert runs["orders"][2][1][0] == {"order_id": "O-40"}


async def test_the_worker_is_another_process_at_the_lowest_priority_and_stops_when_closed() -> None:
    w = Worker()
    assert not w.running
    pid, nice, policy = await w.run(bulkwork.probe)
    assert pid != os.getpid() and nice == 19 and policy == os.SCHED_IDLE and w.running and w.started == 1
    assert (await w.run(bulkwork.probe))[0] == pid  # the same process for the next piece of work
    await w.close()
    assert not w.running
    await until(lambda: not _alive(pid), "the worker process to end")


async def test_an_unused_worker_stops_by_itself() -> None:
    w = Worker(idle_s=0.05)
    pid, _, _ = await w.run(bulkwork.probe)
    await until(lambda: not w.running, "the idle worker to stop")
    await until(lambda: not _alive(pid), "the worker process to end")


async def test_a_stopping_gateway_does_not_wait_for_the_workers_part_in_hand() -> None:
    w = Worker()
    pid, _, _ = await w.run(bulkwork.probe)
    busy = asyncio.ensure_future(w.run(time.sleep, 600))  # stands for a 16 MB part on a starved CPU
    await asyncio.sleep(0.2)
    async with asyncio.timeout(30):  # a safety limit: without `kill` this would wait the full 600 s
        await w.close(kill=True)
        with pytest.raises(WorkerLost):
            await busy
    await until(lambda: not _alive(pid), "the worker process to end")
    assert not w.running


async def test_a_worker_that_dies_is_reported_and_replaced() -> None:
    w = Worker()
    pid, _, _ = await w.run(bulkwork.probe)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLost):
        await w.run(bulkwork.probe)
    new_pid, _, _ = await w.run(bulkwork.probe)
    assert new_pid != pid and w.started == 2
    await w.close()


async def test_a_worker_that_dies_halfway_through_sending_its_result_is_reported_not_waited_for() -> None:
    """Its result pipe holds the head of a message whose rest never comes. The pool's thread must meet
    end-of-file (gateway/bulkwork.py `_close_result_writer`), not wait for the rest: it did wait, forever, and
    a SIGTERM'd gateway's `close(kill=True)` hung in the pool's shutdown."""
    w = Worker()
    pid, _, _ = await w.run(bulkwork.probe)
    async with asyncio.timeout(30):  # a safety limit: without the fix the first await never ends
        with pytest.raises(WorkerLost):
            await w.run(die_mid_send)
        assert not w.running
        new_pid, _, _ = await w.run(bulkwork.probe)
        assert new_pid != pid and w.started == 2
        await w.close(kill=True)
    await until(lambda: not _alive(new_pid), "the worker process to end")


async def test_a_set_whose_worker_is_killed_is_applied_by_a_fresh_one(tmp_path: Path, clock: ManualClock) -> None:
    j, s = await open_service(tmp_path, clock)
    await command(s, "masterdata.sync", {"cmd_id": "md", "mode": "merge", "sync_id": "md", "part": 1, "parts": 1,
                                         "skus": SKUS})
    results: list[dict[str, Any]] = []
    applier = await stored_replace(s, clock, results)  # one part of ~20 KB: parsed in the worker
    applier.retry_s = 0.05
    real_run = applier.worker.run
    killed = 0

    async def run(fn: Any, *args: Any) -> Any:
        nonlocal killed
        if fn is bulkwork.prepare and not killed:
            killed += 1
            pid, _, _ = await real_run(bulkwork.probe)
            os.kill(pid, signal.SIGKILL)  # the OOM killer, say, while the part is handed over
        return await real_run(fn, *args)
    applier.worker.run = run  # type: ignore[method-assign]
    runner = asyncio.create_task(applier.run())
    applier.kick("big")
    try:
        await until(lambda: bool(results), "the set's one result")
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await applier.close()
    [done] = results
    assert killed == 1 and applier.worker.started == 2
    assert done["status"] == "done" and done["applied"] == 2 * N and not done["rejected"], done
    assert len(s.floor.md.skus) == N
    await j.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child that ended but was not yet reaped
        return open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_which_parts_are_parsed_on_the_loop() -> None:
    """By item count where the part was counted: zlib packs a megabyte of repetitive orders into a few KB."""
    repetitive = zlib.compress(json.dumps({"orders": [{"order_id": "O-1", "lines": []}] * 20_000}).encode())
    assert len(repetitive) < bulk.INLINE_BYTES  # small stored, large parsed
    assert not bulk._inline(20_000, repetitive)
    assert bulk._inline(12, b"x" * 100_000)  # counted and small: here, whatever its size
    assert bulk._inline(0, "{}") and bulk._inline(0, b"x" * bulk.INLINE_BYTES)  # uncounted: by stored size
    assert not bulk._inline(0, b"x" * (bulk.INLINE_BYTES + 1))


@pytest.mark.parametrize("length", [77, 120])
def test_a_long_tmpdir_does_not_stop_the_fork_server(tmp_path: Path, length: int) -> None:
    """Under a TMPDIR too long for a socket path the fork server's socket goes under /tmp (CPython 3.13's own
    rule), and it starts: before, the gateway's start ended in "AF_UNIX path too long" and a traceback. 77
    characters: too long for 3.11's socket name ("/pymp-", 8 random characters, "/listener-", 8 more), though
    not for 3.13's shorter "/sock-" one."""
    assert len(str(tmp_path)) < length - 2
    long_dir = tmp_path / ("d" * (length - len(str(tmp_path)) - 1))
    long_dir.mkdir()
    assert len(str(long_dir)) == length
    assert bulkwork.short_temp_base(str(long_dir)) == "/tmp"
    assert bulkwork.short_temp_base("/tmp") == "/tmp"
    code = ("import tempfile; from gateway import bulkwork; from multiprocessing import forkserver, util; "
            "bulkwork.prestart(); print(util.get_temp_dir()); forkserver._forkserver._stop()")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(long_dir)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    used = done.stdout.strip()
    assert used.startswith("/tmp/pymp-"), used
    assert not Path(used).exists()  # removed when the process ended
