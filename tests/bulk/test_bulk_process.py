"""Bulk parts through the installed `floorgate` command: the worker process is forked by the fork server the
real console script starts (not a test runner's), applies a multi-part replace, stops when the set is done,
and a SIGTERM still stops the gateway cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from tests.brokers import Broker
from tests.bulk.workload import masterdata_parts
from tests.gateway_proc import GatewayProcess, write_config
from tests.procs import processes
from tests.sync.conftest import running_hub

FLOORGATE = Path(sys.executable).parent / "floorgate"


def workers(pid: int) -> list[str]:
    """The gateway's worker processes: children of its fork server (gateway/bulkwork.py `context`). The fork
    server and multiprocessing's resource tracker, children of the gateway, live as long as it does."""
    return [args for _, args in worker_pids(pid)]


def worker_pids(pid: int) -> list[tuple[int, str]]:
    procs = processes()
    servers = {p for p, parent, args in procs if parent == pid and "forkserver" in args}
    assert servers, [args for p, parent, args in procs if parent == pid]  # started with the gateway
    return [(p, args) for p, parent, args in procs if parent in servers]


def policy(pid: int) -> int | None:
    """The scheduling policy of a process (field 41 of /proc/PID/stat), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[38])


def alive(pid: int) -> bool:
    """Running or stopped; a zombie (killed, not yet reaped by whoever adopted it) is not alive."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


async def test_a_large_replace_through_the_installed_command(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path / "floorgate.toml", tmp_path / "data", broker.port)
    gw = GatewayProcess(config, command=[str(FLOORGATE)]).start()
    try:
        parts, _ = masterdata_parts(6_000, 1_000, parts=3, sync_id="proc")  # ~200 KB a part: the worker's work
        async with running_hub(broker.port, validate=False) as hub:
            ids = [hub.send("masterdata.sync", p) for p in parts]
            for cid in ids:
                assert (await hub.wait_result(cid, timeout=120))["status"] == "accepted"
            done = (await hub.wait_result(ids[-1], timeout=120, count=2))
            assert hub.results[ids[-1]][1]["status"] == "done", done
            assert hub.results[ids[-1]][1]["applied"] == 7_002
        assert gw.proc is not None
        pid = gw.proc.pid
        deadline = time.monotonic() + 30
        # The worker stops once the set is done. Its process ends before the gateway logs "stopped" (the
        # shutdown joins it first), and the log line reaches us through a pipe: wait for both.
        while (workers(pid) or not any(r.get("msg") == "bulk worker process stopped" for r in gw.lines)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not workers(pid)
        msgs = [r.get("msg") for r in gw.lines]
        assert "bulk worker process starting" in msgs and "bulk worker process stopped" in msgs, msgs
        assert msgs.index("bulk set done") < msgs.index("bulk worker process stopped"), msgs
        t0 = time.monotonic()
        assert gw.terminate(timeout=15) == 0
        assert time.monotonic() - t0 < 15
    finally:
        gw.kill()


async def test_sigterm_while_a_large_set_is_applied_stops_at_once_and_the_set_finishes_after_restart(
        tmp_path: Path, broker: Broker) -> None:
    """The worker's part in hand is not waited for (a 16 MB part can take it many seconds): the gateway stops
    within its 10 s, and the stored set is applied again after the restart, with its one `done` result."""
    config = write_config(tmp_path / "floorgate.toml", tmp_path / "data", broker.port)
    gw = GatewayProcess(config, command=[str(FLOORGATE)]).start()
    try:
        parts, _ = masterdata_parts(60_000, 5_000, parts=3, sync_id="big")
        async with running_hub(broker.port, validate=False) as hub:
            ids = [hub.send("masterdata.sync", p) for p in parts]
            for cid in ids:
                assert (await hub.wait_result(cid, timeout=120))["status"] == "accepted"
            deadline = time.monotonic() + 60
            while not any(r.get("msg") == "bulk set started" for r in gw.lines):
                assert time.monotonic() < deadline, list(gw.lines)[-10:]
                time.sleep(0.02)
            assert not any(r.get("msg") == "bulk set done" for r in gw.lines)
            t0 = time.monotonic()
            assert gw.terminate(timeout=15) == 0
            assert time.monotonic() - t0 < 15  # SIGTERM's budget is 10 s; 15 is a safety margin, not a goal
            assert not [r for r in gw.lines if r.get("msg") == "bulk set done"]
            gw.start()  # the same journal: the complete set is found and applied again
            done = await hub.wait_result(ids[-1], timeout=180, count=2)
            result = hub.results[ids[-1]][1]
            assert result["status"] == "done" and result["applied"] == 65_002, (done, result)
        assert gw.terminate(timeout=15) == 0  # a clean stop: its worker and the resource tracker end with it
    finally:
        gw.kill()


async def test_a_sigkilled_gateway_takes_its_busy_worker_with_it(tmp_path: Path, broker: Broker) -> None:
    """No systemd here to kill the whole cgroup (a laptop, a test rig): the worker, in the middle of a part,
    still ends with the gateway. It is stopped (SIGSTOP) first, so that it cannot end on its own by finishing
    the part and meeting its closed pipe: only the parent-death signals (gateway/parentdeath.py) can end it,
    the fork server's when the gateway dies, then the worker's when the fork server dies."""
    config = write_config(tmp_path / "floorgate.toml", tmp_path / "data", broker.port)
    gw = GatewayProcess(config, command=[str(FLOORGATE)]).start()
    stopped: list[int] = []
    try:
        parts, _ = masterdata_parts(60_000, 5_000, parts=3, sync_id="orphan")
        assert gw.proc is not None
        pid = gw.proc.pid
        async with running_hub(broker.port, validate=False) as hub:
            for p in parts:
                hub.send("masterdata.sync", p)
            deadline = time.monotonic() + 120
            # Until the worker has run its initializer (its last step: SCHED_IDLE), it has not asked for the
            # signal yet; stopped before, it could never ask. The loop must run: the hub's sends are on it.
            while not ((found := worker_pids(pid)) and all(policy(w) == os.SCHED_IDLE for w, _ in found)):
                assert time.monotonic() < deadline, list(gw.lines)[-10:]
                await asyncio.sleep(0.02)
            stopped = [w for w, _ in found]
            for w in stopped:
                os.kill(w, signal.SIGSTOP)
            gw.proc.send_signal(signal.SIGKILL)
            gw.proc.wait(timeout=30)
            deadline = time.monotonic() + 60  # a safety limit: the kernel's signal comes at once
            while any(alive(w) for w in stopped) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not [w for w in stopped if alive(w)]
    finally:
        for w in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        gw.kill()
