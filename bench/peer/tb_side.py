"""ThingsBoard IoT Gateway's side of the comparison: its Modbus TCP connector polls input registers 0-3 of every
simulated PTL module (one FC04 per module per poll, the "0-3" range form), reports on change, and publishes
to the private Mosquitto with QoS 1 from its SQLite-backed storage.

A key press on a module raises its event counter (IR 3), so the gateway publishes `{"ptl-uNNN": [{"ts",
"values": {"ir_3": n, ...}}]}` on `v1/gateway/telemetry`; the subscriber matches (device, n) to the press.
The modules show a job permanently (written straight into the simulator: nobody drives the lights on this
side), so every press registers.

ThingsBoard's gateway only counts itself connected once its platform has answered the `getSessionLimits`
RPC; a plain broker never answers, so the subscriber plays that one part of the ThingsBoard server and
answers with no limits (a fairer setting than any real server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from bench.peer.common import Repeats, SideResult, Subscriber, poll_rates, read_proc, until
from bench.peer.venv import TB_VERSION
from simulators.broker import Broker
from simulators.ptl import PtlSimulator

PEER_DIR = Path(__file__).resolve().parent
TELEMETRY = "v1/gateway/telemetry"
RPC_REQUEST = "v1/devices/me/rpc/request/"
NO_LIMITS = {"rateLimits": {}, "gatewayRateLimits": {}, "maxInflightMessages": 100, "maxPayloadSize": 65536}


def device(unit: int) -> str:
    return f"ptl-u{unit:03d}"


def write_config(work: Path, mqtt_port: int, ptl_port: int, units: list[int], poll_ms: int) -> Path:
    """The checked-in configs with this run's ports, poll period and one slave entry per module."""
    conf = work / "config"
    conf.mkdir(parents=True, exist_ok=True)
    gw = json.loads((PEER_DIR / "tb_gateway.json").read_text())
    gw["thingsboard"]["host"], gw["thingsboard"]["port"] = "127.0.0.1", mqtt_port
    gw["storage"]["data_file_path"] = str(work / "data") + "/"
    modbus = json.loads((PEER_DIR / "modbus.json").read_text())
    template = modbus["master"]["slaves"][0]
    modbus["master"]["slaves"] = [{**template, "host": "127.0.0.1", "port": ptl_port, "unitId": u,
                                   "deviceName": device(u), "pollPeriod": poll_ms} for u in units]
    (conf / "tb_gateway.json").write_text(json.dumps(gw, indent=2))
    (conf / "modbus.json").write_text(json.dumps(modbus, indent=2))
    (conf / "logs.json").write_text((PEER_DIR / "logs.json").read_text())
    return conf


def platform_stub(client: paho.Client, msg: paho.MQTTMessage) -> None:
    if not msg.topic.startswith(RPC_REQUEST):
        return
    try:
        method = json.loads(msg.payload).get("method")
    except ValueError:
        return
    if method == "getSessionLimits":
        client.publish("v1/devices/me/rpc/response/" + msg.topic[len(RPC_REQUEST):], json.dumps(NO_LIMITS), qos=1)


class Tracker(Repeats):
    """(device, event counter) -> arrival times, parsed from the subscriber's telemetry as it comes; a (module,
    counter) again is a repeat (Repeats)."""

    def __init__(self, sub: Subscriber) -> None:
        super().__init__()
        self.sub = sub
        self.seen = 0
        self.keys: dict[tuple[str, int], list[float]] = {}
        self.devices: set[str] = set()
        self.telemetry_arrivals: list[float] = []

    def update(self) -> None:
        new = self.sub.since(self.seen)
        self.seen += len(new)
        for a in new:
            if a.topic != TELEMETRY:
                continue
            self.telemetry_arrivals.append(a.at)
            try:
                body: dict[str, Any] = json.loads(a.payload)
            except ValueError:
                continue
            for dev, entries in body.items():
                self.devices.add(dev)
                for entry in entries if isinstance(entries, list) else [entries]:
                    values = entry.get("values", entry) if isinstance(entry, dict) else {}
                    if "ir_3" in values:
                        self.arrived(self.keys.setdefault((dev, int(values["ir_3"])), []), a.at, a.dup)

    def first(self, key: tuple[str, int]) -> float | None:
        self.update()
        got = self.keys.get(key)
        return got[0] if got else None


class TbSide:
    name = f"ThingsBoard IoT Gateway {TB_VERSION}"

    def __init__(self, python: Path, work: Path, units: list[int], seed: int) -> None:
        self.python = python
        self.work = work
        self.units = units
        self.rng = random.Random(seed)

    async def run(self, poll_ms: int, presses: int, idle_s: float, outage_s: float,
                  outage_interval_s: float, drain_timeout_s: float) -> SideResult:
        work = self.work / f"tb-{poll_ms}ms"
        work.mkdir(parents=True, exist_ok=True)
        broker = Broker(work / "broker", persistence=True).start()
        result = SideResult(self.name, poll_ms, [])
        proc: subprocess.Popen[bytes] | None = None
        sub: Subscriber | None = None
        try:
            async with PtlSimulator(self.units, transport="tcp") as sim:
                for u in self.units:  # a job on every module, so that every key press registers
                    sim.module(u).write_holding(0, [1, 5, 2, 0, u], sim.now_ms())
                sub = Subscriber(broker.port, [TELEMETRY, RPC_REQUEST + "+"], "peer-meter-tb", platform_stub).start()
                tracker = Tracker(sub)
                conf = write_config(work, broker.port, sim.port, self.units, poll_ms)
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
                       "TB_GW_CONFIG_DIR": str(conf) + "/", "PYTHONUNBUFFERED": "1"}
                t_start = time.monotonic()
                with open(work / "tb.out", "wb") as out:
                    proc = subprocess.Popen([str(self.python), str(PEER_DIR / "run_tb.py")], cwd=work, env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                pid = proc.pid

                def all_reported() -> bool:
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"ThingsBoard gateway exited ({proc.returncode}); see {work / 'tb.out'}")
                    tracker.update()
                    return len(tracker.devices) >= len(self.units)
                await until(all_reported, "ThingsBoard's first report of every module", 120)
                await asyncio.sleep(1.0)

                r0, q0 = read_proc(pid), {u: sim.requests[u] for u in self.units}
                await asyncio.sleep(idle_s)
                r1, q1 = read_proc(pid), {u: sim.requests[u] for u in self.units}
                result.cpu_idle_pct = 100 * (r1.cpu_s - r0.cpu_s) / (r1.at - r0.at)
                poll_rates(result, q0, q1, list(self.units), r1.at - r0.at)  # every module shows a job here

                for k in range(presses):
                    unit = self.units[k % len(self.units)]
                    await asyncio.sleep(self.rng.uniform(0, poll_ms / 1000))  # any phase of a poll
                    t = time.monotonic()
                    if not sim.press(unit, "confirm"):
                        raise RuntimeError(f"module {unit} took no key")
                    key = (device(unit), sim.module(unit).counter)
                    await until(lambda: tracker.first(key) is not None, f"the telemetry of {key}", 30)  # noqa: B023
                    arrived = tracker.first(key)
                    assert arrived is not None
                    result.latencies_ms.append((arrived - t) * 1000)

                if outage_s > 0:
                    await self._outage(sim, broker, tracker, result, outage_s, outage_interval_s, drain_timeout_s)
                end = read_proc(pid)
                result.cpu_run_s = end.cpu_s
                result.wall_run_s = end.at - t_start
                result.rss_mb, result.hwm_mb = end.rss_kb / 1024, end.hwm_kb / 1024
        finally:
            if proc is not None:
                _stop(proc)
            if sub is not None:
                sub.stop()
            broker.stop()
        return result

    async def _outage(self, sim: PtlSimulator, broker: Broker, tracker: Tracker, result: SideResult,
                      outage_s: float, interval_s: float, drain_timeout_s: float) -> None:
        tracker.update()
        broker.stop()
        expected: list[tuple[str, int]] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + outage_s
        k = 0
        while loop.time() < end:
            unit = self.units[k % len(self.units)]
            k += 1
            if sim.press(unit, "confirm"):
                expected.append((device(unit), sim.module(unit).counter))
            await asyncio.sleep(interval_s)
        broker.start()
        t_back = time.monotonic()
        result.outage_s = outage_s
        result.outage_presses = len(expected)
        with contextlib.suppress(TimeoutError):
            await until(lambda: all(tracker.first(key) is not None for key in expected),
                        "every press of the outage", drain_timeout_s)
        tracker.update()
        # The first key event the gateway published after the broker came back (first seen now).
        fresh = [times[0] for times in tracker.keys.values() if times[0] >= t_back]
        result.first_event_after_outage_s = (min(fresh) - t_back) if fresh else None
        arrivals = [tracker.first(key) for key in expected]
        got = [a for a in arrivals if a is not None]
        result.lost = len(expected) - len(got)
        if got and result.lost == 0:
            result.all_events_after_outage_s = max(got) - t_back
        result.duplicated = tracker.republished  # over the whole run, as on Floorgate's side
        result.redelivered = tracker.redelivered
        result.notes = (f"{len(tracker.keys)} distinct key counters in {len(tracker.telemetry_arrivals)} telemetry "
                        f"messages over the run; published twice by the gateway: {tracker.republished}; "
                        f"redelivered by the broker: {tracker.redelivered}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
