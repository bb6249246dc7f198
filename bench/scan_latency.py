"""Scan to stored: from the last byte of a barcode written on a pty to the scan stored in the journal
(serial reader -> scanner coordinator -> the one scan pipeline -> group commit with synchronous=FULL), p50
and p99, beside a plain blocking `os.read` of the same bytes on the same pty (the floor any reader stands on).
Then the recovery time after the scanner is unplugged and plugged in again (the reader finds it again by
itself under the same path). Goals: p99 under 5 ms; recovery under 2 s.

    python -m bench.scan_latency [--scans 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from bench.gateway_ready import gateway_ready
from bench.scan_driver import baseline_latency, pct
from gateway.app import App
from gateway.clock import SystemClock
from gateway.config import parse_config
from simulators.broker import free_port
from simulators.scanner.serial_sim import VirtualSerialScanner

CODE = "A-09-99"  # a location code the floor does not know: refused, and still stored in the audit trail


async def run(n: int, work: Path) -> dict[str, float]:
    link = work / "scanner"
    sim = VirtualSerialScanner(link, terminator="crlf")
    sim.plug()
    cfg = parse_config({"data_dir": str(work / "gw"), "http": {"port": free_port(), "host": "127.0.0.1"},
                        "scanners": [{"id": "scan-1", "port": str(link), "station": "pick"}]})
    app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
    task = asyncio.create_task(app.run(install_signals=False), name="bench-gateway")
    try:
        await gateway_ready(app, "scan-1")
        assert app.fleet is not None
        dev = app.fleet.scanners["scan-1"]
        done = asyncio.Event()
        inner = dev.handle

        async def handle(raw):  # type: ignore[no-untyped-def]
            out = await inner(raw)
            done.set()
            return out
        dev.handle = handle  # type: ignore[method-assign]
        lat: list[float] = []
        for _ in range(n):
            done.clear()
            await sim.scan(CODE)
            t0 = time.perf_counter()
            await done.wait()
            lat.append(time.perf_counter() - t0)
        # Unplug, wait, plug in again under the same path: time until a scan is stored again.
        sim.unplug()
        async with asyncio.timeout(30):
            while app.registry.devices["scan-1"].online:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.5)
        sim.plug()
        t0 = time.perf_counter()
        async with asyncio.timeout(30):
            while not app.registry.devices["scan-1"].online:
                await asyncio.sleep(0.005)
            done.clear()
            await sim.scan(CODE)
            await done.wait()
        recovery = time.perf_counter() - t0
    finally:
        app.stop()
        await task
    base, _ = baseline_latency(sim, n)
    sim.close()
    return {"p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "base_p50_ms": pct(base, 50) * 1e3,
            "base_p99_ms": pct(base, 99) * 1e3, "recovery_s": recovery}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=2000)
    args = ap.parse_args()
    logging.getLogger("floorgate").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="floorgate-scan-", dir=os.environ.get("BENCH_DIR")) as d:
        r = asyncio.run(run(args.scans, Path(d)))
    print(f"scan_latency: {args.scans} scans, last byte on the pty -> scan stored (fsync'd)")
    print(f"{'measure':44} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'gateway: stored in the journal':44} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}   (goal p99 < 5 ms)")
    print(f"{'baseline: blocking os.read of the bytes':44} {r['base_p50_ms']:8.3f} {r['base_p99_ms']:8.3f}")
    print(f"{'recovery after unplug/replug, s':44} {r['recovery_s']:8.2f}   (goal < 2 s)")
    print(json.dumps({"bench": "scan_latency", "scans": args.scans,
                      **{k: round(v, 3) for k, v in r.items()}}))


if __name__ == "__main__":
    main()
