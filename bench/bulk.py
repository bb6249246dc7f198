"""Bulk master data without stalling the floor: time to apply 100,000 SKUs + 20,000 locations sent by the
hub as a `masterdata.sync` replace in parts over MQTT, and the scan-to-feedback latency (last byte written on
a serial scanner's pty -> the good/bad beep bytes read back, i.e. after the scan is stored) during the apply,
beside the same latency with no bulk work, in the same run. The hub and the scanner run in a process of their
own (as on a floor), the gateway alone in this one. Goals: applied in under 20 s; scan p99 during bulk
under 2x the idle figure.

    python -m bench.bulk [--skus 100000] [--locations 20000] [--parts 10] [--idle-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing
import resource
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.gateway_ready import gateway_ready
from bench.sync_drain import Cleanup, run_bench
from gateway.app import App
from gateway.clock import SystemClock
from gateway.config import parse_config
from gateway.sync.mqtt import MqttSettings
from simulators.broker import Broker, free_port
from simulators.hub import HubSim
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.bulk.workload import masterdata_parts


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


async def scan_once(sim: VirtualSerialScanner, code: str) -> float:
    sim.read_feedback()
    await sim.scan(code)
    t0 = time.perf_counter()
    async with asyncio.timeout(30):
        await sim.wait_feedback(1)
    return time.perf_counter() - t0


def child(target: str, conn: Connection, *args: Any) -> None:
    """A process of the bench's own: the hub, or the picker's scanner. On a floor neither shares the gateway's
    process (its GIL, its event loop), nor each other's: a hub simulator pushing 11 MB out of the same loop
    would delay the scanner's own timing and be counted as the gateway's."""
    try:
        conn.send(asyncio.run(TARGETS[target](conn, *args)))
    except BaseException:
        conn.send({"error": traceback.format_exc()})


async def _scanner(conn: Connection, work: str, idle_s: float) -> dict[str, Any]:
    sim = VirtualSerialScanner(Path(work) / "scanner", terminator="crlf")
    sim.plug()
    try:
        conn.send("plugged")
        assert await asyncio.to_thread(conn.recv) == "badge"  # the operator exists now
        await scan_once(sim, "BADGE-P1")
        # Idle is measured as long as the bulk work is allowed to take (the 20 s goal), at the same pace: a
        # second of idle scans would miss what a floor does every few seconds (hub acks, storage checks,
        # telemetry) and compare a calm second with twenty busy ones.
        idle: list[float] = []
        end = time.perf_counter() + idle_s
        while time.perf_counter() < end:
            idle.append(await scan_once(sim, "4006381333931"))
            await asyncio.sleep(0.01)
        conn.send("idle done")
        assert await asyncio.to_thread(conn.recv) == "during"
        stop = asyncio.ensure_future(asyncio.to_thread(conn.recv))
        during: list[float] = []
        during_t: list[float] = []
        while not stop.done():
            during_t.append(time.perf_counter())
            during.append(await scan_once(sim, "4006381333931"))
            await asyncio.sleep(0.01)
        assert stop.result() == "stop"
        return {"idle": idle, "during": during, "during_t": during_t}
    finally:
        sim.close()


async def _hub(conn: Connection, port: int, site: str, gateway: str, skus: int, locations: int, n_parts: int
               ) -> dict[str, Any]:
    hub = HubSim(MqttSettings(port=port, client_id="hub-bulk"), site, gateway, keep_events=False, validate=False)
    hub_task = asyncio.create_task(hub.run(), name="bench-hub")
    try:
        async with asyncio.timeout(30):
            await hub.mqtt.connected.wait()
        small = await hub.command("masterdata.sync", {"mode": "replace", "sync_id": "small", "part": 1, "parts": 1,
                                                      "skus": [{"sku": "SKU-1", "gtins": ["4006381333931"]}],
                                                      "operators": [{"operator_id": "p1", "badge": "BADGE-P1",
                                                                     "roles": ["picker"], "zones": ["zone-a"]}]})
        await hub.wait_result(small["cmd_id"], count=2)
        parts, _ = masterdata_parts(skus, locations, n_parts)
        ids = [f"bulk-{k}" for k in range(len(parts))]
        bodies = [json.dumps({"cmd_id": cid, **p}).encode() for cid, p in zip(ids, parts, strict=True)]
        del parts
        gc.collect()
        gc.freeze()
        conn.send("seeded")
        assert await asyncio.to_thread(conn.recv) == "go"
        t0 = time.perf_counter()
        for body in bodies:
            hub.send_raw("masterdata.sync", body)
        await hub.wait_result(ids[-1], timeout=600, count=2)
        return {"apply_s": time.perf_counter() - t0, "t0": t0, "result": hub.results[ids[-1]][1],
                "payload_mb": sum(map(len, bodies)) / 1e6}
    finally:
        hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hub_task


def kill_all(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        if proc.pid is not None and proc.exitcode is None:
            proc.kill()
            proc.join(10)


TARGETS: dict[str, Callable[..., Coroutine[Any, Any, dict[str, Any]]]] = {"scanner": _scanner, "hub": _hub}


async def receive(conn: Connection, timeout: float) -> Any:
    """The next message from a child, polled from the loop: a thread blocked in `recv` would hold up the
    loop's shutdown when the bench is interrupted."""
    deadline = time.monotonic() + timeout
    while not conn.poll():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the bench's process sent nothing in {timeout:.0f} s")
        await asyncio.sleep(0.05)
    msg = conn.recv()
    if isinstance(msg, dict) and "error" in msg:
        raise RuntimeError(f"a bench process failed:\n{msg['error']}")
    return msg


async def run(args: argparse.Namespace, work: Path, cleanup: Cleanup) -> dict[str, float]:
    broker = Broker(work / "broker").start()
    cleanup.push(broker.stop)
    cfg = parse_config({"data_dir": str(work / "gw"), "mqtt": {"port": broker.port},
                        "http": {"port": free_port(), "host": "127.0.0.1"},
                        "scanners": [{"id": "scan-1", "port": str(work / "scanner"), "station": "pick",
                                      "good_feedback": "06", "bad_feedback": "15"}]})
    ctx = multiprocessing.get_context("spawn")
    scan_conn, scan_child = ctx.Pipe()
    hub_conn, hub_child = ctx.Pipe()
    procs = [ctx.Process(target=child, args=("scanner", scan_child, str(work), args.idle_s), name="bench-scanner"),
             ctx.Process(target=child, args=("hub", hub_child, broker.port, cfg.site, cfg.gateway, args.skus,
                                             args.locations, args.parts), name="bench-hub")]
    procs[0].start()
    cleanup.push(lambda: kill_all(procs))
    app: App | None = None
    task: asyncio.Task[None] | None = None
    try:
        await receive(scan_conn, 60)  # the scanner's pty exists
        app = App(cfg, SystemClock(), web=False, daily_checks=False)
        task = asyncio.create_task(app.run(install_signals=False), name="bench-gateway")
        await gateway_ready(app, "scan-1")
        assert app.service is not None
        procs[1].start()
        await receive(hub_conn, 120)  # the operator and SKU-1 are there, the parts are ready to go
        scan_conn.send("badge")
        await receive(scan_conn, args.idle_s + 60)
        scan_conn.send("during")
        hub_conn.send("go")
        h = await receive(hub_conn, 600)
        scan_conn.send("stop")
        r = await receive(scan_conn, 60)
        result = h["result"]
        assert result["status"] == "done" and len(app.service.floor.md.skus) == args.skus, result
        assert app.link is not None
        worker = app.link.bulk.worker
        async with asyncio.timeout(30):  # the applier stops its worker once the set is done
            while worker.running:
                await asyncio.sleep(0.05)
        peaks = {"gateway_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "worker_peak_rss_mb": worker.peak_rss_kb / 1024}
    finally:
        if app is not None and task is not None:
            app.stop()
            await task
        for proc in procs:
            if proc.pid is None:
                continue
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        broker.stop()
    idle = r["idle"]
    during = [lat for t, lat in zip(r["during_t"], r["during"], strict=True) if t >= h["t0"]]  # from the first part
    return {"apply_s": h["apply_s"], "items": float(result["applied"]), "payload_mb": h["payload_mb"],
            "idle_p50_ms": pct(idle, 50) * 1e3, "idle_p99_ms": pct(idle, 99) * 1e3,
            "bulk_p50_ms": pct(during, 50) * 1e3, "bulk_p99_ms": pct(during, 99) * 1e3,
            "scans_during": float(len(during)), "scans_idle": float(len(idle)), **peaks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skus", type=int, default=100_000)
    ap.add_argument("--locations", type=int, default=20_000)
    ap.add_argument("--parts", type=int, default=10)
    ap.add_argument("--idle-s", type=float, default=20.0, help="seconds of scans with no bulk work")
    args = ap.parse_args()
    logging.getLogger("floorgate").setLevel(logging.WARNING)
    # Whatever happens (done, failed, Ctrl-C, SIGTERM), the broker and the bench's processes are stopped by PID
    # and the work directory removed (bench.sync_drain.run_bench).
    r = run_bench(lambda work, cleanup: run(args, work, cleanup), "floorgate-bulk-")
    ratio = r["bulk_p99_ms"] / r["idle_p99_ms"]
    print(f"bulk: {args.skus} SKUs + {args.locations} locations ({r['payload_mb']:.1f} MB in {args.parts} parts), "
          f"replace over MQTT, scans arriving all along")
    print(f"{'measure':48} {'value':>10}")
    print(f"{'applied (first part sent -> done result), s':48} {r['apply_s']:10.1f}   (goal < 20 s)")
    print(f"{'scan -> feedback p50 / p99, idle, ms':48} {r['idle_p50_ms']:5.1f} / {r['idle_p99_ms']:5.1f}"
          f"   ({int(r['scans_idle'])} scans in {args.idle_s:.0f} s)")
    print(f"{'scan -> feedback p50 / p99, during bulk, ms':48} {r['bulk_p50_ms']:5.1f} / {r['bulk_p99_ms']:5.1f}"
          f"   ({int(r['scans_during'])} scans)")
    print(f"{'p99 during bulk / idle':48} {ratio:10.2f}   (goal < 2)")
    print(f"{'peak RSS: gateway / bulk worker process, MB':48} {r['gateway_peak_rss_mb']:5.0f} / "
          f"{r['worker_peak_rss_mb']:5.0f}")
    print(json.dumps({"bench": "bulk", **{k: round(v, 3) for k, v in r.items()}, "p99_ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()
