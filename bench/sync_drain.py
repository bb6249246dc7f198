"""Drain after an outage: N events stored while the broker was down, then the broker comes back.

Measures, against one private Mosquitto, with the same hub simulator receiving:
  - the gateway (`floorgate run` in its own process, `mqtt.inflight` = --window): events/s from the broker's
    return until the hub holds all N, and the time from the broker's return to the first event the hub
    receives (goal < 1 s);
  - the baseline: raw paho 2.x in its own process sending the same N event bodies (same sizes, same topics,
    QoS 1, at most --window unacknowledged) the fastest way paho does it: one thread in `loop_forever`, each
    PUBACK callback publishing the next event, the window counted by the publisher itself (paho's own limit
    off, see RAW_PUBLISHER). Its clock runs from its connect until the hub holds all N and every PUBACK is in.
Prints the ratio (goal >= 0.5).

    python -m bench.sync_drain [--events 100000] [--outage-s 2] [--window 200]

Whatever happens (done, failed, Ctrl-C, SIGTERM), the broker, the gateway and the publisher are stopped by
their PIDs and the temporary directory is removed (`run_bench`, also used by bench.sync_outage).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.clock import SystemClock
from gateway.config import parse_config
from gateway.domain.change import Change
from gateway.journal import Journal
from gateway.sync.mqtt import MqttSettings
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.gateway_proc import ROOT, write_config

T = TypeVar("T")

# Why paho's own in-flight limit is off (0): paho drops an acknowledged message from its count only after
# the PUBACK callback returns, so with its limit at the window every publish made from that callback finds
# the window full and is queued; paho then finds it again by scanning every in-flight message (O(window) per
# PUBACK) and sends it with one send() of its own: the earlier baseline, alone against the broker (20,000
# events, no subscriber), got 5,300 PUBACKs/s, this one 12,000-16,000/s. Here the callback only queues the
# packet, and paho writes everything a burst of PUBACKs released in one go on its next loop turn. The window
# is still --window: `sent - acked` never exceeds it. (Tried too, none faster: paho's own limit with everything
# queued up front, our own select loop around loop_read/loop_write, loop_start with a publishing thread;
# TCP_NODELAY, bigger socket buffers and other windows from 50 to 5,000 made no difference beyond noise.)
RAW_PUBLISHER = r'''
import signal, sqlite3, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
signal.signal(signal.SIGINT, signal.SIG_DFL)  # stopped by the bench (by PID) or a terminal's Ctrl-C: no traceback
db, port, prefix, window = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
msgs = [(f"{prefix}/events/{t}", body)
        for t, body in sqlite3.connect(db).execute("SELECT type, body FROM events ORDER BY seq")]
n = len(msgs)
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-baseline", clean_session=True)
c.max_inflight_messages_set(0)
c.max_queued_messages_set(0)
sent = acked = 0
def fill():
    global sent
    stop, i, publish = min(n, acked + window), sent, c.publish
    while i < stop:
        topic, body = msgs[i]
        publish(topic, body, qos=1)
        i += 1
    sent = i
def on_connect(cl, u, flags, reason, props):
    if reason.is_failure:
        sys.exit(f"refused: {reason}")
    fill()
def on_publish(cl, u, mid, reason, props):
    global acked
    acked += 1
    if acked < n:
        fill()
    else:
        print(f"raw-acked {time.monotonic():.6f}", flush=True)
        cl.disconnect()
c.on_connect = on_connect
c.on_publish = on_publish
print(f"raw-start {time.monotonic():.6f}", flush=True)
c.connect("127.0.0.1", port, 30)
c.loop_forever()
sys.exit(0 if acked == n else f"only {acked} of {n} PUBACKs")
'''


# ---- nothing left behind -----------------------------------------------------------------------------------


class Cleanup:
    """What a bench started or made, undone in reverse order at the end, whatever happened."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []

    def push(self, fn: Callable[[], object]) -> None:
        self._undo.append(fn)

    def run(self) -> None:
        while self._undo:
            fn = self._undo.pop()
            try:
                fn()
            except Exception as e:  # the next step still runs
                print(f"clean-up step failed: {e!r}", file=sys.stderr)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL by PID, only while Popen has not reaped it (so never another process that reuses the PID)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


def stop_gracefully(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    """SIGTERM, as systemd stops the gateway (it then removes what it made, e.g. the bulk fork server's socket
    directory in TMPDIR); SIGKILL only if it has not stopped within `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc)


def run_bench(bench: Callable[[Path, Cleanup], Awaitable[T]], prefix: str) -> T:
    """Run `bench(work, cleanup)` on a new event loop in a new temporary directory `work`.

    SIGINT (Ctrl-C) or SIGTERM cancels the bench, so its `finally` blocks run (another one cancels it again,
    for a step that swallowed the first cancellation). Then, whether the bench finished, failed or was
    interrupted, every step it pushed onto `cleanup` (stopping its processes by PID) runs, with these signals
    ignored, and `work` is removed. Interrupted, it exits with 128 + the signal's number. A signal ignored when
    the bench started (SIGINT of a background job in a script) stays ignored."""
    signals: list[int] = []
    cleanup = Cleanup()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    async def guarded(work: Path) -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_signal(signum: int) -> None:
            signals.append(signum)
            task.cancel()
        for sig, was in previous.items():
            if was is not signal.SIG_IGN:
                loop.add_signal_handler(sig, on_signal, sig)
        return await bench(work, cleanup)

    try:
        work = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_DIR")))
        cleanup.push(lambda: shutil.rmtree(work, ignore_errors=True))
        try:
            result = asyncio.run(guarded(work))
        except asyncio.CancelledError:
            if not signals:
                raise
        if signals:
            print(f"interrupted by {signal.Signals(signals[0]).name}: stopping what the bench started",
                  file=sys.stderr)
            raise SystemExit(128 + signals[0])
        return result
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        cleanup.run()
        for sig, was in previous.items():
            signal.signal(sig, signal.SIG_DFL if was is None else was)


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


async def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[Any], timeout: float, name: str) -> str:
    """The first line of `path` (written by `proc`) that contains `needle`; fails if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        for line in _text(path).splitlines():
            if needle in line:
                return line
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = "".join(_text(path).splitlines(keepends=True)[-30:])
            state = f"exited {proc.returncode}" if proc.returncode is not None else f"no {needle!r} in {timeout} s"
            raise RuntimeError(f"{name}: {state}:\n{tail}")
        await asyncio.sleep(0.01)


async def wait_exit(proc: subprocess.Popen[Any], timeout: float) -> int:
    """Its exit status, polled from the loop (a thread blocked in wait() would hold up the loop's shutdown)."""
    async with asyncio.timeout(timeout):
        while proc.poll() is None:
            await asyncio.sleep(0.01)
    return proc.returncode


# ---- the bench ----------------------------------------------------------------------------------------------


async def prefill(data_dir: Path, n: int) -> None:
    cfg = parse_config({"data_dir": str(data_dir)})
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=SystemClock())
    try:
        j.log_events = False
        for start in range(0, n, 500):
            futs = []
            for i in range(start, min(start + 500, n)):
                ch = Change()
                ch.emit("pick.line_confirmed", {"task_id": f"T-{i // 5}", "line_no": i % 5 + 1, "sku": "SKU-000042",
                                                "gtin": "04006381333931", "serials": [], "qty": 1,
                                                "location": "A-01-03", "operator_id": "p17", "via": "scan"},
                        f"O-{i // 5}")
                futs.append(j.submit(ch))
            await asyncio.gather(*futs)
    finally:
        await j.close()  # its SQLite threads would keep the process alive


async def measure(hub: HubSim, n: int, start: float, journal: str) -> tuple[float, float]:
    """Seconds from `start` to the first event and to the moment the hub holds seq 1..N."""
    first = None
    async with asyncio.timeout(600):
        while True:
            if first is None and hub.received:
                first = time.monotonic()
            if hub.holds(n, journal):
                return (first or time.monotonic()) - start, time.monotonic() - start
            await asyncio.sleep(0.002)


async def hub_running(hub: HubSim, stack: contextlib.AsyncExitStack) -> None:
    task = asyncio.create_task(hub.run(), name="hub")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # not suppress(CancelledError): ours would go too
    stack.push_async_callback(stop)
    async with asyncio.timeout(30):
        await hub.mqtt.connected.wait()


async def run(args: argparse.Namespace, work: Path, cleanup: Cleanup) -> dict[str, Any]:
    broker = Broker(work / "broker", persistence=True)
    cleanup.push(broker.stop)
    broker.start()
    prefix = "floorgate/v1/dc1/zone-a"
    gw_dir = work / "gw"
    await prefill(gw_dir, args.events)
    db = gw_dir / "floorgate.db"
    with contextlib.closing(sqlite3.connect(db)) as c:
        journal = c.execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()[0]

    # Ours: the hub has a persistent session at the broker; the broker goes down; the gateway starts offline.
    async with contextlib.AsyncExitStack() as stack:
        hub = HubSim(MqttSettings(port=broker.port, client_id="hub-drain"), "dc1", "zone-a", keep_events=False,
                     validate=False, ack_every_s=1.0)
        await hub_running(hub, stack)
        await asyncio.sleep(0.5)
        broker.stop()
        conf = write_config(work / "gw.toml", gw_dir, broker.port)
        conf.write_text(conf.read_text().replace("[mqtt]\n", f"[mqtt]\ninflight = {args.window}\n"))
        gw_log = work / "gw.log"
        with open(gw_log, "wb") as out:
            gw = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(conf)], stdout=out,
                                  stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        cleanup.push(lambda: stop_process(gw))
        await wait_for_line(gw_log, '"gateway started"', gw, 60, "floorgate run")
        await asyncio.sleep(args.outage_s)
        broker.start()
        t0 = time.monotonic()
        first_ours, all_ours = await measure(hub, args.events, t0, journal)
        await asyncio.to_thread(stop_gracefully, gw)

    # Baseline: the same bodies, raw paho, the same broker, a fresh hub session.
    async with contextlib.AsyncExitStack() as stack:
        hub2 = HubSim(MqttSettings(port=broker.port, client_id="hub-raw", clean_session=True), "dc1", "zone-a",
                      keep_events=False, validate=False, auto_replay=False, auto_ack=False)
        await hub_running(hub2, stack)
        await asyncio.sleep(0.5)
        raw_out = work / "raw.out"
        with open(raw_out, "wb") as out:
            raw = subprocess.Popen([sys.executable, "-c", RAW_PUBLISHER, str(db), str(broker.port), prefix,
                                    str(args.window)], stdout=out, stderr=subprocess.STDOUT)
        cleanup.push(lambda: stop_process(raw))
        t1 = float((await wait_for_line(raw_out, "raw-start ", raw, 120, "raw publisher")).split()[1])
        _, at_hub = await measure(hub2, args.events, t1, journal)
        acked = float((await wait_for_line(raw_out, "raw-acked ", raw, 60, "raw publisher")).split()[1]) - t1
        rc = await wait_exit(raw, 60)
        if rc != 0:
            raise RuntimeError(f"raw publisher exited {rc}: {_text(raw_out)[-2000:]}")
    all_raw = max(at_hub, acked)
    return {"events": args.events, "ours_s": all_ours, "first_event_s": first_ours, "raw_s": all_raw,
            "ours_per_s": args.events / all_ours, "raw_per_s": args.events / all_raw,
            "ours_after_first_per_s": args.events / max(all_ours - first_ours, 1e-9),
            "raw_pubacks_per_s": args.events / acked,
            "duplicates": hub.duplicates, "replays": hub.replays_sent}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--outage-s", type=float, default=2.0)
    ap.add_argument("--window", type=int, default=200, help="in-flight window for both (mqtt.inflight)")
    args = ap.parse_args()

    async def bench(work: Path, cleanup: Cleanup) -> dict[str, Any]:
        return await run(args, work, cleanup)
    r = run_bench(bench, "floorgate-drain-")
    ratio = r["ours_per_s"] / r["raw_per_s"]
    print(f"sync_drain: {r['events']} events stored offline, then the broker returns (window {args.window})")
    print(f"{'measure':56} {'value':>10}")
    print(f"{'raw paho QoS 1 loop, events/s to the hub':56} {r['raw_per_s']:10.0f}")
    print(f"{'  (its PUBACKs alone: events/s to the broker)':56} {r['raw_pubacks_per_s']:10.0f}")
    print(f"{'floorgate drain, events/s to the hub':56} {r['ours_per_s']:10.0f}")
    print(f"{'  (counted from its first event at the hub)':56} {r['ours_after_first_per_s']:10.0f}")
    print(f"{'ratio (goal >= 0.5)':56} {ratio:10.2f}")
    print(f"{'broker back -> first event at the hub, s (goal < 1)':56} {r['first_event_s']:10.2f}")
    print(f"{'duplicates seen by the hub (allowed)':56} {r['duplicates']:10d}")
    print(f"{'replays the hub asked for':56} {r['replays']:10d}")
    print(json.dumps({"bench": "sync_drain", "events": r["events"], "events_per_s": round(r["ours_per_s"]),
                      "raw_paho_per_s": round(r["raw_per_s"]), "ratio": round(ratio, 2),
                      "events_per_s_after_first": round(r["ours_after_first_per_s"]),
                      "raw_paho_pubacks_per_s": round(r["raw_pubacks_per_s"]),
                      "first_event_s": round(r["first_event_s"], 3), "duplicates": r["duplicates"],
                      "replays": r["replays"]}))


if __name__ == "__main__":
    main()
