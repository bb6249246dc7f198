"""Serial scanner driver figures, each beside a baseline measured in the same run on the same pty.

1. Latency: from the last byte of a scan written on the pty (master side) to the `RawScan` delivered by
   `SerialScanner` through the event loop, one scan at a time; baseline: a plain blocking `os.read` loop
   on the same pty, the fastest a process can see those bytes.
2. Burst: many scans written back to back, until the last one is delivered; baseline: the blocking
   loop splitting the stream at CRLF and decoding each scan (the framing job without the event loop).
3. Recovery: unplug (pty closed, link removed), an outage, replug (new pty, same link): time from
   replug to the reader reporting itself online (goal < 2 s); baseline: one fresh pyserial open.

    python -m bench.scan_driver [--scans 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import tty
from pathlib import Path

import serial

from drivers.scanner import RawScan, SerialScanner
from simulators.scanner import VirtualSerialScanner

SCAN = b"]C10109506000134352\x1d10LOT-2026-11\r\n"
OUTAGES_S = (0.0, 0.2, 0.5, 1.0, 1.7, 3.0)
GOAL_RECOVERY_S = 2.0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def reader_latency(sim: VirtualSerialScanner, n: int) -> tuple[list[float], float]:
    loop = asyncio.get_running_loop()
    waiting: list[asyncio.Future[float]] = []
    delivered = 0
    last_at = 0.0
    burst_done = loop.create_future()
    burst_n = 0

    def on_scan(scan: RawScan) -> None:
        nonlocal delivered, last_at
        now = time.perf_counter()
        delivered += 1
        if waiting and not waiting[0].done():
            waiting.pop(0).set_result(now)
        if burst_n and delivered == burst_n and not burst_done.done():
            last_at = now
            burst_done.set_result(None)

    online = asyncio.Event()
    r = SerialScanner("bench", sim.path, on_scan, lambda ok, _d: online.set() if ok else None)
    await r.start()
    await online.wait()
    master = sim.master
    assert master is not None
    lat: list[float] = []
    try:
        for _ in range(n):
            fut: asyncio.Future[float] = loop.create_future()
            waiting.append(fut)
            os.write(master, SCAN)
            t0 = time.perf_counter()
            lat.append(await fut - t0)
        delivered, burst_n = 0, n
        data = SCAN * n
        t0 = time.perf_counter()
        await sim.send(data)
        await burst_done
        burst = n / (last_at - t0)
    finally:
        await r.stop()
    return lat, burst


def baseline_latency(sim: VirtualSerialScanner, n: int) -> tuple[list[float], float]:
    fd = os.open(sim.slave_path, os.O_RDWR | os.O_NOCTTY)  # blocking, no event loop at all
    tty.setraw(fd)
    master = sim.master
    assert master is not None
    os.set_blocking(master, True)
    lat: list[float] = []
    try:
        for _ in range(n):
            os.write(master, SCAN)
            t0 = time.perf_counter()
            got = b""
            while not got.endswith(b"\r\n"):
                got += os.read(fd, 4096)
            lat.append(time.perf_counter() - t0)
        # The same job without the loop: split the stream at CRLF and decode each scan, reading between
        # slices written small enough for the pty's buffer (no writer thread needed).
        t0 = time.perf_counter()
        chunk = SCAN * 50
        scans, sent, rest = 0, 0, b""
        while scans < n:
            if sent < n:
                k = min(50, n - sent)
                os.write(master, chunk[: k * len(SCAN)])
                sent += k
            while scans < sent:
                *lines, rest = (rest + os.read(fd, 65536)).split(b"\r\n")
                for line in lines:
                    if line:
                        line.decode("utf-8", errors="replace")
                        scans += 1
        burst = n / (time.perf_counter() - t0)
    finally:
        os.set_blocking(master, False)
        os.close(fd)
    return lat, burst


async def recovery(link: Path) -> tuple[list[tuple[float, float]], float]:
    sim = VirtualSerialScanner(link)
    sim.plug()
    changed = asyncio.Event()
    state: list[bool] = []

    def on_status(ok: bool, _detail: str) -> None:
        state.append(ok)
        changed.set()

    async def until(ok: bool) -> float:
        while not (state and state[-1] is ok):
            changed.clear()
            await changed.wait()
        return time.perf_counter()

    r = SerialScanner("bench", str(link), lambda _s: None, on_status)
    await r.start()
    results: list[tuple[float, float]] = []
    try:
        await until(True)
        for outage in OUTAGES_S:
            sim.unplug()
            await until(False)
            await asyncio.sleep(outage)
            sim.plug()
            t0 = time.perf_counter()
            results.append((outage, await asyncio.wait_for(until(True), 30) - t0))
        opens = []
        for _ in range(20):
            t0 = time.perf_counter()
            s = serial.Serial(str(link), 9600, timeout=0)
            opens.append(time.perf_counter() - t0)
            s.close()
    finally:
        await r.stop()
        sim.close()
    return results, statistics.median(opens)


async def main_async(n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as d:
        sim = VirtualSerialScanner()
        sim.plug()
        try:
            lat, burst = await reader_latency(sim, n)
            base, base_burst = baseline_latency(sim, n)
        finally:
            sim.close()
        rec, open_s = await recovery(Path(d) / "by-id-scanner")

    us = 1e6
    p50, p99, b50, b99 = pct(lat, 50) * us, pct(lat, 99) * us, pct(base, 50) * us, pct(base, 99) * us
    worst = max(s for _, s in rec)
    print(f"serial scanner driver, {n} scans of {len(SCAN)} bytes on a pty")
    print(f"{'figure':<34}{'SerialScanner':>16}{'blocking read':>16}{'ratio':>8}")
    print(f"{'latency p50 (us)':<34}{p50:>16.1f}{b50:>16.1f}{p50 / b50:>8.2f}")
    print(f"{'latency p99 (us)':<34}{p99:>16.1f}{b99:>16.1f}{p99 / b99:>8.2f}")
    print(f"{'burst (scans/s)':<34}{burst:>16.0f}{base_burst:>16.0f}{burst / base_burst:>8.2f}")
    print(f"recovery after replug (goal < {GOAL_RECOVERY_S} s; baseline: one pyserial open = {open_s * 1e3:.2f} ms)")
    for outage, s in rec:
        print(f"  outage {outage:>4.1f} s -> online after {s * 1e3:8.1f} ms")
    return {
        "scans": n, "latency_p50_us": round(p50, 1), "latency_p99_us": round(p99, 1),
        "baseline_latency_p50_us": round(b50, 1), "baseline_latency_p99_us": round(b99, 1),
        "latency_ratio_p50": round(p50 / b50, 2), "latency_ratio_p99": round(p99 / b99, 2),
        "burst_scans_per_s": round(burst), "baseline_burst_scans_per_s": round(base_burst),
        "burst_ratio": round(burst / base_burst, 2),
        "recovery_s": [round(s, 3) for _, s in rec], "recovery_outages_s": list(OUTAGES_S),
        "recovery_max_s": round(worst, 3), "baseline_open_ms": round(open_s * 1e3, 3),
        "recovery_goal_s": GOAL_RECOVERY_S, "recovery_ok": worst < GOAL_RECOVERY_S,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--scans", type=int, default=3000)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main_async(args.scans))))


if __name__ == "__main__":
    main()
