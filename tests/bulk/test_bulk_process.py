"""Bulk parts through the installed `floorgate` command: the worker process is forked by the fork server the
real console script starts (not a test runner's), applies a multi-part replace, stops when the set is done,
and a SIGTERM still stops the gateway cleanly."""

from __future__ import annotations

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
    procs = processes()
    servers = {p for p, parent, args in procs if parent == pid and "forkserver" in args}
    assert servers, [args for p, parent, args in procs if parent == pid]  # started with the gateway
    return [args for p, parent, args in procs if parent in servers]


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
