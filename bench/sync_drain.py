"""Drain after an outage: N events stored while the broker was down, then the broker comes back.

Measures, against one private Mosquitto, with the same hub simulator receiving:
  - the gateway (`floorgate run` in its own process): events/s until the hub holds all N, and the time from
    the broker's return to the first event the hub receives (goal < 1 s);
  - the baseline: a raw paho QoS 1 publish loop (its own process, publishing from paho's own loop thread with
    the same in-flight window, the fastest way paho can do it) sending the same N event bodies.
Prints the ratio (goal >= 0.5).

    python -m bench.sync_drain [--events 100000] [--outage-s 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.config import parse_config
from gateway.domain.change import Change
from gateway.journal import Journal
from gateway.sync.mqtt import MqttSettings
from simulators.hub import HubSim
from tests.brokers import Broker
from tests.gateway_proc import GatewayProcess, write_config

RAW_PUBLISHER = r'''
import sqlite3, sys, time
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
db, port, prefix, window = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rows = sqlite3.connect(db).execute("SELECT type, body FROM events ORDER BY seq").fetchall()
c = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-baseline", clean_session=True)
c.max_inflight_messages_set(window)
c.max_queued_messages_set(0)
state = {"next": 0, "acked": 0}
def pump():
    while state["next"] < len(rows) and state["next"] - state["acked"] < window:
        t, body = rows[state["next"]]
        c.publish(f"{prefix}/events/{t}", body, qos=1)
        state["next"] += 1
def on_connect(cl, u, f, rc, p):
    pump()
def on_publish(cl, u, mid, rc, p):
    state["acked"] += 1
    if state["acked"] >= len(rows):
        cl.disconnect()
    else:
        pump()
c.on_connect = on_connect
c.on_publish = on_publish
c.connect("127.0.0.1", port, 30)
print("connected", flush=True)
c.loop_forever()
'''


async def prefill(data_dir: Path, n: int) -> None:
    cfg = parse_config({"data_dir": str(data_dir)})
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=SystemClock())
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
    await j.close()


async def measure(hub: HubSim, n: int, start: float, journal: str | None) -> tuple[float, float]:
    """Seconds from `start` to the first event and to the last of N events at the hub."""
    first = None
    async with asyncio.timeout(600):
        while True:
            if first is None and hub.received:
                first = time.monotonic()
            done = (hub.holds(n, journal) if journal else hub.received >= n)
            if done:
                return (first or time.monotonic()) - start, time.monotonic() - start
            await asyncio.sleep(0.002)


async def run(args: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="floorgate-drain-", dir=os.environ.get("BENCH_DIR")))
    broker = Broker(work / "broker", persistence=True).start()
    prefix = "floorgate/v1/dc1/zone-a"
    gw_dir = work / "gw"
    await prefill(gw_dir, args.events)
    db = gw_dir / "floorgate.db"
    journal = sqlite3.connect(db).execute("SELECT value FROM meta WHERE key='journal_id'").fetchone()[0]

    # Ours: the hub has a persistent session at the broker; the broker goes down; the gateway starts offline.
    hub = HubSim(MqttSettings(port=broker.port, client_id="hub-drain"), "dc1", "zone-a", keep_events=False,
                 validate=False, ack_every_s=1.0)
    hub_task = asyncio.create_task(hub.run(), name="hub")
    await hub.mqtt.connected.wait()
    await asyncio.sleep(0.5)
    broker.stop()
    conf = write_config(work / "gw.toml", gw_dir, broker.port)
    gw = GatewayProcess(conf)
    await asyncio.to_thread(gw.start)
    await asyncio.sleep(args.outage_s)
    broker.start()
    t0 = time.monotonic()
    first_ours, all_ours = await measure(hub, args.events, t0, journal)
    gw.kill()
    hub_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await hub_task

    # Baseline: the same bodies, raw paho, the same broker, a fresh hub session.
    hub2 = HubSim(MqttSettings(port=broker.port, client_id="hub-raw", clean_session=True), "dc1", "zone-a",
                  keep_events=False, validate=False, auto_replay=False, auto_ack=False)
    hub2_task = asyncio.create_task(hub2.run(), name="hub2")
    await hub2.mqtt.connected.wait()
    await asyncio.sleep(0.5)
    raw = subprocess.Popen([sys.executable, "-c", RAW_PUBLISHER, str(db), str(broker.port), prefix,
                            str(args.window)], stdout=subprocess.PIPE, text=True)
    assert raw.stdout is not None
    await asyncio.to_thread(raw.stdout.readline)
    t1 = time.monotonic()
    _, all_raw = await measure(hub2, args.events, t1, None)
    raw.wait(60)
    hub2_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await hub2_task
    broker.stop()
    return {"events": args.events, "ours_s": all_ours, "first_event_s": first_ours, "raw_s": all_raw,
            "ours_per_s": args.events / all_ours, "raw_per_s": args.events / all_raw,
            "duplicates": hub.duplicates, "replays": hub.replays_sent}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--outage-s", type=float, default=2.0)
    ap.add_argument("--window", type=int, default=200, help="in-flight window for both (mqtt.inflight)")
    args = ap.parse_args()
    r = asyncio.run(run(args))
    ratio = r["ours_per_s"] / r["raw_per_s"]
    print(f"sync_drain: {r['events']} events stored offline, then the broker returns")
    print(f"{'measure':52} {'value':>10}")
    print(f"{'raw paho QoS 1 loop, events/s to the hub':52} {r['raw_per_s']:10.0f}")
    print(f"{'floorgate drain, events/s to the hub':52} {r['ours_per_s']:10.0f}")
    print(f"{'ratio (goal >= 0.5)':52} {ratio:10.2f}")
    print(f"{'broker back -> first event at the hub, s (goal < 1)':52} {r['first_event_s']:10.2f}")
    print(f"{'duplicates seen by the hub (allowed)':52} {r['duplicates']:10d}")
    print(f"{'replays the hub asked for':52} {r['replays']:10d}")
    print(json.dumps({"bench": "sync_drain", "events": r["events"], "events_per_s": round(r["ours_per_s"]),
                      "raw_paho_per_s": round(r["raw_per_s"]), "ratio": round(ratio, 2),
                      "first_event_s": round(r["first_event_s"], 3), "duplicates": r["duplicates"],
                      "replays": r["replays"]}))


if __name__ == "__main__":
    main()
