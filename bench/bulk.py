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
import os
import resource
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.gateway_ready import gateway_ready
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


def world(port: int, work: str, site: str, gateway: str, a: dict[str, Any], conn: Connection) -> None:
    """The hub and the picker's scanner, in a process of their own: on a floor neither shares the gateway's
    process (its GIL, its event loop), so the bench must not make them share it either."""
    try:
        conn.send(asyncio.run(_world(port, Path(work), site, gateway, argparse.Namespace(**a), conn)))
    except BaseException:
        conn.send({"error": traceback.format_exc()})


async def _world(port: int, work: Path, site: str, gateway: str, args: argparse.Namespace,
                 conn: Connection) -> dict[str, Any]:
    sim = VirtualSerialScanner(work / "scanner", terminator="crlf")
    sim.plug()
    hub = HubSim(MqttSettings(port=port, client_id="hub-bulk"), site, gateway, keep_events=False, validate=False)
    hub_task = asyncio.create_task(hub.run(), name="bench-hub")
    try:
        conn.send("plugged")
        await asyncio.to_thread(conn.recv)  # the gateway is up and has the scanner
        async with asyncio.timeout(30):
            await hub.mqtt.connected.wait()
        small = await hub.command("masterdata.sync", {"mode": "replace", "sync_id": "small", "part": 1, "parts": 1,
                                                      "skus": [{"sku": "SKU-1", "gtins": ["4006381333931"]}],
                                                      "operators": [{"operator_id": "p1", "badge": "BADGE-P1",
                                                                     "roles": ["picker"], "zones": ["zone-a"]}]})
        await hub.wait_result(small["cmd_id"], count=2)
        await scan_once(sim, "BADGE-P1")
        # Idle is measured as long as the bulk work is allowed to take (the 20 s goal), at the same pace: a
        # second of idle scans would miss what a floor does every few seconds (hub acks, storage checks,
        # telemetry) and compare a calm second with twenty busy ones.
        idle: list[float] = []
        end = time.perf_counter() + args.idle_s
        while time.perf_counter() < end:
            idle.append(await scan_once(sim, "4006381333931"))
            await asyncio.sleep(0.01)

        parts, _ = masterdata_parts(args.skus, args.locations, args.parts)
        ids = [f"bulk-{k}" for k in range(len(parts))]
        bodies = [json.dumps({"cmd_id": cid, **p}).encode() for cid, p in zip(ids, parts, strict=True)]
        del parts
        gc.collect()
        gc.freeze()
        t0 = time.perf_counter()
        for body in bodies:
            hub.send_raw("masterdata.sync", body)
        done_evt = asyncio.Event()

        async def wait_done() -> None:
            await hub.wait_result(ids[-1], timeout=600, count=2)
            done_evt.set()
        waiter = asyncio.create_task(wait_done(), name="bench-bulk-done")
        during: list[float] = []
        during_t: list[float] = []
        while not done_evt.is_set():
            during_t.append(time.perf_counter())
            during.append(await scan_once(sim, "4006381333931"))
            await asyncio.sleep(0.01)
        apply_s = time.perf_counter() - t0
        await waiter
        return {"apply_s": apply_s, "result": hub.results[ids[-1]][1], "payload_mb": sum(map(len, bodies)) / 1e6,
                "idle": idle, "during": during, "during_t": during_t}
    finally:
        hub_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hub_task
        sim.close()


async def receive(conn: Connection, timeout: float) -> Any:
    if not await asyncio.to_thread(conn.poll, timeout):
        raise TimeoutError(f"the hub/scanner process sent nothing in {timeout:.0f} s")
    msg = conn.recv()
    if isinstance(msg, dict) and "error" in msg:
        raise RuntimeError(f"the hub/scanner process failed:\n{msg['error']}")
    return msg


async def run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    broker = Broker(work / "broker").start()
    cfg = parse_config({"data_dir": str(work / "gw"), "mqtt": {"port": broker.port},
                        "http": {"port": free_port(), "host": "127.0.0.1"},
                        "scanners": [{"id": "scan-1", "port": str(work / "scanner"), "station": "pick",
                                      "good_feedback": "06", "bad_feedback": "15"}]})
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=world, args=(broker.port, str(work), cfg.site, cfg.gateway, vars(args), child_conn),
                       name="bench-bulk-world")
    proc.start()
    app: App | None = None
    task: asyncio.Task[None] | None = None
    try:
        await receive(conn, 60)  # the scanner's pty exists
        app = App(cfg, SystemClock(), web=False, daily_checks=False)
        task = asyncio.create_task(app.run(install_signals=False), name="bench-gateway")
        await gateway_ready(app, "scan-1")
        assert app.service is not None
        conn.send("go")
        r = await receive(conn, args.idle_s + 600)
        result = r["result"]
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
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        broker.stop()
    idle, during = r["idle"], r["during"]
    return {"apply_s": r["apply_s"], "items": float(result["applied"]), "payload_mb": r["payload_mb"],
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
    with tempfile.TemporaryDirectory(prefix="floorgate-bulk-", dir=os.environ.get("BENCH_DIR")) as d:
        r = asyncio.run(run(args, Path(d)))
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
