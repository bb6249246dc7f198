"""MT-SICS weighings per second through the asyncio scale driver, beside pyserial's own blocking
request/reply loop on the same pty in the same run (the fastest way the library does the job), against the
scale simulator in its own process.

A pty has no baud rate, so both figures are far above a real scale at 9600 baud (about 40 `SI` round trips
a second on the wire, and a scale's own update rate, often 10-20 Hz, below that): the point is the
driver's overhead, not the scale's speed.

    python -m bench.scale [--count 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serial

from drivers.scale import SerialScale

SIM = ("import argparse, sys\n"
       "from simulators.scale import cli\n"
       "p = argparse.ArgumentParser(); sub = p.add_subparsers(required=True); cli.add_parser(sub)\n"
       "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")


def baseline(path: str, count: int) -> float:
    """pyserial, blocking: write `SI`, read the reply line, repeat. The reply is read in whatever chunks have
    arrived (`read_until` would take it a byte per call, a slower baseline than pyserial can be)."""
    with serial.Serial(path, 9600, timeout=2) as ser:
        ser.reset_input_buffer()
        t0 = time.perf_counter()
        for _ in range(count):
            ser.write(b"SI\r\n")
            line = b""
            while not line.endswith(b"\n"):
                chunk = ser.read(max(1, ser.in_waiting))
                if not chunk:
                    raise RuntimeError("baseline: no reply")
                line += chunk
            if not line.startswith(b"S S"):
                raise RuntimeError("baseline: unexpected reply")
        return count / (time.perf_counter() - t0)


async def driver(path: str, count: int, command: str) -> float:
    async with SerialScale(path) as scale:
        read = scale.read_immediate if command == "SI" else scale.read_stable
        t0 = time.perf_counter()
        for _ in range(count):
            w = await read(5.0)
            if not w.stable:
                raise RuntimeError("driver: unexpected reply")
        return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        link = str(Path(tmp) / "scale")
        proc = subprocess.Popen([sys.executable, "-c", SIM, "scale", "--link", link, "--grams", "1234"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
        try:
            assert proc.stdout is not None
            proc.stdout.readline()  # the simulator is up once it has printed its path
            base = baseline(link, args.count)
            si = asyncio.run(driver(link, args.count, "SI"))
            s = asyncio.run(driver(link, args.count, "S"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
    rows = [("pyserial blocking SI round trips (baseline)", base, 1.0),
            ("SerialScale.read_immediate (SI)", si, si / base),
            ("SerialScale.read_stable (S)", s, s / base)]
    print(f"{'what':48} {'per s':>10} {'vs baseline':>12}")
    for name, rate, ratio in rows:
        print(f"{name:48} {rate:10.0f} {ratio:12.2f}")
    print(json.dumps({"count": args.count, "baseline_pyserial_si_per_s": round(base),
                      "driver_si_per_s": round(si), "driver_si_ratio": round(si / base, 3),
                      "driver_s_per_s": round(s), "driver_s_ratio": round(s / base, 3)}))


if __name__ == "__main__":
    main()
