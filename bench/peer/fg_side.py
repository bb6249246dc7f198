"""Floorgate's side of the comparison: the real gateway (`floorgate run`, its own process) polls the same PTL
simulator, and a key press becomes a `pick.line_confirmed` event at the subscriber.

A confirm only counts on a line whose item was scanned (SPEC §6), so the bench works the floor as a picker
would, through the devices: the hub simulator sends master data (one SKU per module) and orders over MQTT,
the picker logs in with a badge on a serial scanner (a pty), and for each press scans the shelf and one unit
of the item, waits until the module counts down to the last unit, then presses confirm at a random phase of
the poll. The latency runs from that press to the event at the subscriber: poll, key decoded, the whole
domain (line closed, task and order consequences), the journal commit with fsync, and the MQTT publish.
The scans before a press are outside the measured interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

from bench.peer.common import Repeats, SideResult, Subscriber, poll_rates, read_proc, until
from gateway.sync.mqtt import MqttSettings
from simulators.broker import Broker, free_port
from simulators.hub import HubSim
from simulators.ptl import PtlSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.gateway_proc import GatewayProcess

PREFIX = "floorgate/v1/dc1/zone-a"
QTY = 2  # one unit scanned, the last one confirmed with the key
LINES = 4
GOOD, BAD = b"\x06", b"\x15"
MODULE_JOB = 1


def gtin(n: int) -> str:
    """A valid GTIN-14 (GS1 mod-10 check digit) for SKU n."""
    body = f"0400638{n:06d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def location(unit: int) -> str:
    return f"P-01-{unit:03d}"


def masterdata(units: list[int]) -> dict[str, Any]:
    return {"mode": "replace", "sync_id": "peer-md", "part": 1, "parts": 1,
            "skus": [{"sku": f"SKU-{u:03d}", "gtins": [gtin(u)], "unit_weight_g": 100.0} for u in units],
            "locations": [{"code": location(u), "zone": "zone-a", "sku": f"SKU-{u:03d}",
                           "light": {"bus": "bus-a", "unit": u}} for u in units],
            "operators": [{"operator_id": "p1", "name": "Pat", "badge": "BADGE-P1", "roles": ["picker"],
                           "zones": ["zone-a"]}],
            "cartons": []}


def orders(units: list[int], n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        skus = [units[(i * LINES + j) % len(units)] for j in range(min(LINES, len(units)))]
        out.append({"order_id": f"O-{i:05d}", "channel": "web",
                    "lines": [{"line_no": j + 1, "sku": f"SKU-{u:03d}", "qty": QTY} for j, u in enumerate(skus)]})
    return out


def config_text(data_dir: Path, mqtt_port: int, ptl_port: int, scanner: str, poll_ms: int) -> str:
    return (f'data_dir = "{data_dir}"\n'
            f"[mqtt]\nport = {mqtt_port}\n"
            f'[http]\nhost = "127.0.0.1"\nport = {free_port()}\n'
            f'[[ptl.buses]]\nid = "bus-a"\ntransport = "tcp"\nhost = "127.0.0.1"\nport = {ptl_port}\n'
            f"poll_ms = {poll_ms}\n"
            f'[[scanners]]\nid = "scan-1"\nport = "{scanner}"\nstation = "pick"\nterminator = "crlf"\n'
            f'good_feedback = "06"\nbad_feedback = "15"\n'
            f"[picking]\nidle_logout_min = 600\n")


class Tracker(Repeats):
    """Events by id (arrival times) and the pick confirmations in arrival order, parsed as they come; an event id
    again is a repeat (Repeats)."""

    def __init__(self, sub: Subscriber) -> None:
        super().__init__()
        self.sub = sub
        self.seen = 0
        self.by_id: dict[str, list[float]] = {}
        self.picks: list[tuple[float, str, str]] = []  # (arrival, location, event_id), first arrivals only
        self.types: dict[str, list[dict[str, Any]]] = {}

    def update(self) -> None:
        new = self.sub.since(self.seen)
        self.seen += len(new)
        for a in new:
            if not a.topic.startswith(PREFIX + "/events/"):
                continue
            try:
                ev: dict[str, Any] = json.loads(a.payload)
            except ValueError:
                continue
            eid = str(ev.get("event_id"))
            if self.arrived(self.by_id.setdefault(eid, []), a.at, a.dup):
                continue
            self.types.setdefault(str(ev.get("type")), []).append(ev)
            if ev.get("type") == "pick.line_confirmed":
                self.picks.append((a.at, str(ev["data"].get("location")), eid))

    def pick_count(self) -> int:
        self.update()
        return len(self.picks)

    def pick_after(self, t: float, loc: str) -> float | None:
        self.update()
        for at, where, _ in reversed(self.picks):
            if at < t:
                break
            if where == loc:
                return at
        return None

    def has(self, type_: str, pred: Any = None) -> bool:
        self.update()
        return any(pred is None or pred(e) for e in self.types.get(type_, []))


class FgSide:
    name = "Floorgate"

    def __init__(self, work: Path, units: list[int], seed: int) -> None:
        self.work = work
        self.units = units
        self.rng = random.Random(seed)

    async def run(self, poll_ms: int, presses: int, idle_s: float, outage_s: float,
                  outage_interval_s: float, drain_timeout_s: float) -> SideResult:
        work = self.work / f"fg-{poll_ms}ms"
        work.mkdir(parents=True, exist_ok=True)
        broker = Broker(work / "broker", persistence=True).start()
        result = SideResult(self.name, poll_ms, [])
        scanner = VirtualSerialScanner(terminator="crlf")
        scanner.plug()
        gw: GatewayProcess | None = None
        sub: Subscriber | None = None
        hub_task: asyncio.Task[None] | None = None
        try:
            async with PtlSimulator(self.units, transport="tcp") as sim:
                self.sim, self.scanner = sim, scanner
                sub = Subscriber(broker.port, [PREFIX + "/events/#"], "peer-meter-fg").start()
                self.tracker = tracker = Tracker(sub)
                hub = HubSim(MqttSettings(port=broker.port, client_id="hub-peer"), "dc1", "zone-a",
                             keep_events=False, validate=False)
                hub_task = asyncio.create_task(hub.run(), name="peer-hub")
                conf = work / "floorgate.toml"
                conf.write_text(config_text(work / "gw", broker.port, sim.port, scanner.path, poll_ms))
                gw = GatewayProcess(conf)
                t_start = time.monotonic()
                await asyncio.to_thread(gw.start)
                assert gw.proc is not None
                pid = gw.proc.pid
                async with asyncio.timeout(60):
                    await hub.mqtt.connected.wait()
                # The gateway publishes its status once it has subscribed: a command sent before that is lost
                # (its session is new) and would wait for the hub's resend.
                await hub.wait_until(lambda: hub.status is not None, 60)
                need = presses + (int(outage_s / outage_interval_s) + 2 if outage_s else 0)
                r = await hub.command("masterdata.sync", masterdata(self.units), timeout=120)
                await hub.wait_result(r["cmd_id"], timeout=120, count=2)
                n_orders = need // min(LINES, len(self.units)) + 4
                r = await hub.command("order.upsert_batch", {"sync_id": "peer-orders", "part": 1, "parts": 1,
                                                             "orders": orders(self.units, n_orders)}, timeout=120)
                done = await hub.wait_result(r["cmd_id"], timeout=120, count=2)
                if not done.get("ok") or done.get("rejected"):
                    raise RuntimeError(f"orders refused: {done}")
                await until(lambda: tracker.has("device.online", lambda e: e["data"]["device_id"] == "scan-1"),
                            "the scanner online", 60)
                await self._scan("BADGE-P1")
                await until(self._lit, "a lit module after login", 60)
                await asyncio.sleep(1.0)

                # Modules without a job are polled every health_ms (1 s) by design: a key there means nothing.
                lit = [u for u in self.units if sim.module(u).mode == MODULE_JOB]
                r0, q0 = read_proc(pid), {u: sim.requests[u] for u in self.units}
                await asyncio.sleep(idle_s)
                r1, q1 = read_proc(pid), {u: sim.requests[u] for u in self.units}
                result.cpu_idle_pct = 100 * (r1.cpu_s - r0.cpu_s) / (r1.at - r0.at)
                poll_rates(result, q0, q1, lit, r1.at - r0.at)

                for _ in range(presses):
                    t, loc = await self._press(poll_ms)
                    await until(lambda: tracker.pick_after(t, loc) is not None,  # noqa: B023
                                f"the pick.line_confirmed of {loc}", 30)
                    arrived = tracker.pick_after(t, loc)
                    assert arrived is not None
                    result.latencies_ms.append((arrived - t) * 1000)

                if outage_s > 0:
                    await self._outage(broker, result, presses, outage_s, outage_interval_s, drain_timeout_s)
                end = read_proc(pid)
                result.cpu_run_s = end.cpu_s
                result.wall_run_s = end.at - t_start
                result.rss_mb, result.hwm_mb = end.rss_kb / 1024, end.hwm_kb / 1024
        finally:
            if gw is not None and gw.proc is not None:
                with contextlib.suppress(Exception):
                    gw.terminate(15)
                if gw.proc.poll() is None:
                    gw.kill()
            if hub_task is not None:
                hub_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await hub_task
            if sub is not None:
                sub.stop()
            scanner.close()
            broker.stop()
        return result

    def _lit(self) -> int | None:
        """A module showing a fresh line (both units to pick)."""
        for u in self.units:
            node = self.sim.module(u)
            if node.mode == MODULE_JOB and node.quantity == QTY:
                return u
        return None

    async def _scan(self, text: str) -> None:
        self.scanner.read_feedback()
        await self.scanner.scan(text)
        async with asyncio.timeout(30):
            got = await self.scanner.wait_feedback(1)
        if not got.endswith(GOOD):
            raise RuntimeError(f"the gateway refused the scan {text!r} (feedback {got!r})")

    async def _press(self, poll_ms: int) -> tuple[float, str]:
        """Scan shelf and item of a lit line, wait for the countdown, press; (press time, location)."""
        await until(self._lit, "a lit module", 60)
        unit = self._lit()
        assert unit is not None
        node = self.sim.module(unit)
        await self._scan(location(unit))
        await self._scan(gtin(unit))
        await until(lambda: node.mode == MODULE_JOB and node.quantity == QTY - 1, f"module {unit} to count down", 30)
        await asyncio.sleep(self.rng.uniform(0, poll_ms / 1000))
        t = time.monotonic()
        if not self.sim.press(unit, "confirm"):
            raise RuntimeError(f"module {unit} took no key (mode {node.mode})")
        return t, location(unit)

    async def _outage(self, broker: Broker, result: SideResult, before: int, outage_s: float, interval_s: float,
                      drain_timeout_s: float) -> None:
        tracker = self.tracker
        tracker.update()
        broker.stop()
        loop = asyncio.get_running_loop()
        end = loop.time() + outage_s
        pressed = 0
        while loop.time() < end:
            t0 = loop.time()
            _, loc = await self._press(20)
            unit = int(loc.rsplit("-", 1)[1])
            node = self.sim.module(unit)
            # Offline, nothing arrives: wait until the gateway has taken the key (the module is no longer the
            # job that was pressed), then keep the pace.
            await until(lambda: not (node.mode == MODULE_JOB and node.quantity == QTY - 1),  # noqa: B023
                        "the key taken", 30)
            pressed += 1
            await asyncio.sleep(max(0.0, interval_s - (loop.time() - t0)))
        broker.start()
        t_back = time.monotonic()
        result.outage_s = outage_s
        result.outage_presses = pressed
        expected = before + pressed
        with contextlib.suppress(TimeoutError):
            await until(lambda: tracker.pick_count() >= expected, "every pick of the outage", drain_timeout_s)
        tracker.update()
        # The first event the gateway published after the broker came back: an event id first seen now (a
        # broker redelivery of something the meter had before the outage does not count).
        fresh = [times[0] for times in tracker.by_id.values() if times[0] >= t_back]
        result.first_event_after_outage_s = (min(fresh) - t_back) if fresh else None
        result.lost = max(0, expected - len(tracker.picks))
        if result.lost == 0 and tracker.picks:
            result.all_events_after_outage_s = max(at for at, _, _ in tracker.picks[before:]) - t_back
        # Over the whole run and every event type: QoS 1 is at least once, so an event whose PUBACK was lost
        # with the broker is published again; the broker itself may also redeliver to the meter what the meter
        # had not acknowledged when it went down (DUP set), which is no doing of the gateway.
        result.duplicated = tracker.republished
        result.redelivered = tracker.redelivered
        result.notes = (f"{len(tracker.by_id)} distinct events over the run; published twice by the gateway: "
                        f"{tracker.republished}; redelivered by the broker: {tracker.redelivered}")
