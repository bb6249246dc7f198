"""A whole floor around a gateway in its own process: a private Mosquitto, the PTL simulator on Modbus TCP, a
serial scanner on a pty (behind a by-id style link) for every picker and packer, a scale on a pty and a label
printer on TCP per packing station, the hub simulator, and the black-box floor working it all. The gateway
can be SIGKILLed and restarted at any moment; its MQTT connection can go through a `TcpProxy`.

Fault lengths and counts come from the environment, short by default (CI), long on a bench:
FLOORGATE_FAULT_KILLS (20), FLOORGATE_FAULT_ORDERS (24), FLOORGATE_PARTITION_S (4; 60 on a bench),
FLOORGATE_BROKER_DOWN_S (2; 30 on a bench), FLOORGATE_DISK_FULL_S (4; 60 on a bench), FLOORGATE_FAULT_SEED (7).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from gateway.app import App
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.journal import Journal
from gateway.sync.mqtt import MqttSettings
from simulators.broker import Broker, free_port
from simulators.floor.blackbox import SAFETY_S, BlackBoxFloor, Plan, until
from simulators.hub import HubSim
from simulators.printer.sim import PrinterSimulator
from simulators.proxy import TcpProxy
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner
from tests.gateway_proc import GatewayProcess


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


KILLS = env_int("FLOORGATE_FAULT_KILLS", 20)
ORDERS = env_int("FLOORGATE_FAULT_ORDERS", 24)
PARTITION_S = env_float("FLOORGATE_PARTITION_S", 4.0)
BROKER_DOWN_S = env_float("FLOORGATE_BROKER_DOWN_S", 2.0)
DISK_FULL_S = env_float("FLOORGATE_DISK_FULL_S", 4.0)
SEED = env_int("FLOORGATE_FAULT_SEED", 7)


async def fill_disk(journal: Journal) -> None:
    """A full disk, as SQLite sees it: its page limit set to the pages there are, and the room left in them
    taken up by small rows, so the next change of any size fails with SQLITE_FULL."""
    rows = list(await journal.reader.execute_fetchall("PRAGMA page_count"))

    async def job(db: aiosqlite.Connection) -> None:
        await db.execute(f"PRAGMA max_page_count={int(rows[0][0])}")
        for _ in range(100_000):
            try:
                await db.execute("INSERT INTO audit(ts, kind, body) VALUES ('', 'filler', ?)", ("x" * 40,))
            except sqlite3.OperationalError as e:
                if "full" not in str(e):
                    raise
                return
        raise AssertionError("the page limit never filled")
    await journal.run_job(job)


async def free_disk(journal: Journal) -> None:
    """Space returns (a file deleted beside the database, a bigger disk)."""
    await journal.run_job(lambda db: db.execute("PRAGMA max_page_count=1073741823"))


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


def gateway_toml(data_dir: Path, *, mqtt_port: int, http_port: int, ptl: PtlSimulator,
                 scanners: dict[str, tuple[str, str]], scales: dict[str, str], printer_port: int,
                 extra: str = "") -> str:
    """`scanners`: id -> (device path, station); `scales`: station -> device path."""
    if ptl.transport == "tcp":
        bus = ['transport = "tcp"', 'host = "127.0.0.1"', f"port = {ptl.port}"]
    else:
        bus = ['transport = "rtu"', f"port = {toml_str(ptl.path)}", f"baudrate = {ptl.baudrate}"]
    out = [f"data_dir = {toml_str(str(data_dir))}", 'log_level = "info"', extra,
           "[mqtt]", f"port = {mqtt_port}", "keepalive_s = 5",
           "[sync]", "telemetry_interval_s = 2",
           "[http]", 'host = "127.0.0.1"', f"port = {http_port}",
           "[picking]", "error_signal_ms = 200",
           "[dispatch]", "task_cap = 1", "breaker_threshold = 0",
           "[[ptl.buses]]", 'id = "bus-a"', *bus, "timeout_ms = 200"]
    for sid, (path, station) in scanners.items():
        out += ["[[scanners]]", f"id = {toml_str(sid)}", f"port = {toml_str(path)}", f"station = {toml_str(station)}",
                'good_feedback = "06"', 'bad_feedback = "15"']
    for k, (station, path) in enumerate(sorted(scales.items()), start=1):
        out += ["[[scales]]", f'id = "scale-{k}"', f"station = {toml_str(station)}", f"port = {toml_str(path)}"]
        out += ["[[printers]]", f'id = "printer-{k}"', f"station = {toml_str(station)}", 'host = "127.0.0.1"',
                f"port = {printer_port}"]
    return "\n".join(out) + "\n"


@contextlib.asynccontextmanager
async def running_hub(port: int) -> AsyncIterator[HubSim]:
    hub = HubSim(MqttSettings(port=port, client_id="hubsim-faults"), "dc1", "zone-a")
    task = asyncio.create_task(hub.run(), name="faults-hub")
    try:
        async with asyncio.timeout(30):
            await hub.mqtt.connected.wait()
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ProcessGateway:
    """The gateway as in production: its own process, which a fault may SIGKILL."""

    def __init__(self, conf: Path) -> None:
        self.proc = GatewayProcess(conf)

    async def start(self) -> None:
        await asyncio.to_thread(self.proc.start)

    async def kill(self) -> None:
        await asyncio.to_thread(self.proc.kill)

    async def stop(self) -> int:
        return await asyncio.to_thread(self.proc.terminate)

    def tail(self, n: int = 15) -> str:
        return "".join(list(self.proc.raw)[-n:])


class LoopGateway:
    """The gateway on the test's own loop, for faults that need a hand inside it: the database's page limit
    (a full disk) and the wall clock's offset (a clock jump)."""

    def __init__(self, conf: Path, clock: SystemClock) -> None:
        self.conf = conf
        self.clock = clock
        self.app: App | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.app = App(load_config(self.conf), self.clock)
        self._task = asyncio.create_task(self.app.run(install_signals=False), name="faults-gateway")
        async with asyncio.timeout(60):
            await self.app.ready.wait()

    async def kill(self) -> None:
        """Not a SIGKILL (that needs a process): stopped as fast as it goes, for the rig's clean-up."""
        await self.stop()

    async def stop(self) -> int:
        if self.app is None or self._task is None:
            return 0
        self.app.stop()
        task, self._task = self._task, None
        async with asyncio.timeout(30):
            await task
        return 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def tail(self, n: int = 15) -> str:
        return "(in-process gateway: its log is in the test's captured output)"


@dataclass
class Rig:
    tmp: Path
    broker: Broker
    hub: HubSim
    ptl: PtlSimulator
    gateway: ProcessGateway | LoopGateway
    floor: BlackBoxFloor
    plan: Plan
    proxy: TcpProxy | None = None
    restarts: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp / "gw" / "floorgate.db"

    @property
    def app(self) -> App:
        assert isinstance(self.gateway, LoopGateway) and self.gateway.app is not None, "needs in_process=True"
        return self.gateway.app

    async def kill_and_restart(self) -> None:
        assert isinstance(self.gateway, ProcessGateway), "SIGKILL needs the gateway in its own process"
        await self.gateway.kill()
        await self.gateway.start()
        self.restarts += 1

    async def wait_floor_done(self, limit_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        # Twice the floor's own patience (240 s in CI): a packer gives up on an order after SAFETY_S, and that
        # give-up must be seen here, not cut short (bench.faults raises SAFETY_S for long faults).
        end = loop.time() + (limit_s if limit_s is not None else 2 * SAFETY_S)
        while not self.floor.finished():
            err = self.floor.failed()
            if err is not None:
                raise AssertionError(f"a floor actor failed: {err!r}") from err
            if loop.time() > end:
                raise AssertionError(self.describe("the floor did not finish"))
            await asyncio.sleep(0.2)

    def describe(self, what: str) -> str:
        f = self.floor
        f.facts.update()
        states = {o: f.facts.order_state.get(o) for o in f.orders}
        open_ = {o: s for o, s in states.items() if s not in ("packed", "cancelled")}
        return (f"{what}: open orders {open_}; floor {f.report}; hub {self.hub.report()}; "
                f"gateway log tail: {self.gateway.tail()}")

    async def check_outcome(self) -> dict[str, Any]:
        """The hub holds every event with seq 1..N; its order states are the gateway's after recovery (live
        snapshot, then the stored documents after a clean stop); the database is intact; no parcel differs."""
        hub, floor = self.hub, self.floor
        r = await hub.command("sync.snapshot", {}, timeout=SAFETY_S)
        assert r["ok"], r
        assert await until(lambda: bool(hub.snapshots), 30), "no snapshot came"
        snap = hub.snapshots[-1]
        await hub.wait_until(lambda: hub.holds(int(snap["last_seq"])), SAFETY_S)
        states = hub.final_order_states()
        for o in snap["orders"]:  # orders still open, as the recovered gateway has them
            assert states.get(o["order_id"]) == o["state"], (o, states.get(o["order_id"]))
        rc = await self.gateway.stop()
        assert rc == 0, self.gateway.tail(20)
        conn = sqlite3.connect(self.db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = conn.execute("SELECT seq, body FROM events ORDER BY seq").fetchall()
            docs = {i: json.loads(b)["state"] for i, b in conn.execute("SELECT id, body FROM docs WHERE kind='order'")}
        finally:
            conn.close()
        seqs = [s for s, _ in rows]
        assert seqs == list(range(1, len(seqs) + 1)), "the journal's seq has a gap"
        view = hub.journals[hub.current or ""]
        held = view.watermark
        assert held >= int(snap["last_seq"])
        assert [view.events[s] for s in range(1, held + 1)] == [json.loads(b) for _, b in rows[:held]], \
            "the hub holds other events than the journal"
        assert hub.conflicts == [] and hub.invalid == [], (hub.conflicts[:3], hub.invalid[:3])
        assert {o: states.get(o) for o in docs} == docs, "hub and gateway disagree on order states"
        assert not floor.wrong_parcels(), floor.wrong_parcels()
        # A careful floor never loses a unit: a packer reporting one missing means the gateway recorded a unit that
        # never went into a tote (the station's way out kept the order from waiting forever; this says why).
        assert not floor.report.missing_reported, [a for a in floor.report.anomalies if "missing" in a]
        return {"events": len(rows), "hub_duplicates": hub.duplicates, "replays": hub.replays_sent,
                "orders": len(docs), "packed": sum(s == "packed" for s in docs.values())}


@contextlib.asynccontextmanager
async def floor_rig(tmp: Path, *, seed: int = SEED, via_proxy: bool = False, broker_persistence: bool = False,
                    ptl_transport: Literal["tcp", "rtu"] = "tcp", in_process: bool = False,
                    clock: SystemClock | None = None) -> AsyncIterator[Rig]:
    """Everything started, master data sent, every operator logged in; the floor's actors not yet running.
    `ptl_transport`: the PTL bus on Modbus TCP, or RTU over a pty (where line noise exists); `in_process`: the
    gateway on this loop (with `clock`) instead of in its own process."""
    plan = Plan.make()
    broker = Broker(tmp / "broker", persistence=broker_persistence).start()
    pick = {op: VirtualSerialScanner(tmp / f"by-id-pick-{op}", terminator="crlf") for op in plan.pickers}
    pack = {op: VirtualSerialScanner(tmp / f"by-id-pack-{op}", terminator="cr") for op in plan.packers}
    scales = {st: ScaleSimulator(unit="g", name=f"scale-{st}") for st in plan.packers.values()}
    gw: ProcessGateway | LoopGateway | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            ptl = await stack.enter_async_context(PtlSimulator(plan.units, transport=ptl_transport))
            printer = await stack.enter_async_context(PrinterSimulator())
            for sc in scales.values():
                await stack.enter_async_context(sc)
            for vs in [*pick.values(), *pack.values()]:
                vs.plug()
                stack.callback(vs.close)
            proxy = None
            if via_proxy:
                proxy = await stack.enter_async_context(TcpProxy("127.0.0.1", broker.port))
            scanners = {f"scan-{op}": (vs.path, "pick") for op, vs in pick.items()}
            scanners.update({f"scan-{op}": (vs.path, plan.packers[op]) for op, vs in pack.items()})
            conf = tmp / "gw.toml"
            conf.write_text(gateway_toml(tmp / "gw", mqtt_port=proxy.port if proxy else broker.port,
                                         http_port=free_port(), ptl=ptl, scanners=scanners,
                                         scales={st: sc.path for st, sc in scales.items()},
                                         printer_port=printer.port), encoding="utf-8")
            gw = LoopGateway(conf, clock or SystemClock()) if in_process else ProcessGateway(conf)
            await gw.start()
            hub = await stack.enter_async_context(running_hub(broker.port))
            md = await hub.command("masterdata.sync", plan.masterdata(), timeout=SAFETY_S)
            done = await hub.wait_result(md["cmd_id"], timeout=SAFETY_S, count=2)
            assert done["ok"] and not done["rejected"], done
            floor = BlackBoxFloor(plan, hub, ptl, pick, pack, scales, seed=seed)
            await floor.login()
            rig = Rig(tmp, broker, hub, ptl, gw, floor, plan, proxy)
            try:
                yield rig
            finally:
                await floor.stop()
    finally:
        try:
            if gw is not None:
                await gw.kill()  # raises again what stopped a gateway that failed to start
        finally:
            broker.stop()  # left running (by PID) when the gateway's start had failed
