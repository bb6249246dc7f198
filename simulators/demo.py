"""`floorgate demo`: a whole floor on one machine, in one process tree.

A private Mosquitto (the system's binary; without it the gateway runs offline and its pages say so), the PTL
bus simulator on Modbus TCP, virtual serial scanners for every picker and packer, a scale per packing station,
a label printer, the hub simulator sending master data and a stream of orders and checking every event, a
simulated floor of pickers and packers making the usual mistakes, and the gateway itself with its pages.
It prints the URLs, shows a live summary, and stops everything cleanly on Ctrl-C.

The supervisor (`s1`) and the technician (`t1`) get a fresh random password on every run: only its argon2id
hash goes into the master data the hub sends, and the password itself appears once, in the banner printed
on the terminal once the master data is in (never in a log line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.app import App
from gateway.clock import SystemClock
from gateway.config import parse_config
from gateway.logs import setup_logging
from gateway.sync.mqtt import MqttSettings
from gateway.users import hash_password
from simulators.broker import Broker, available, free_port
from simulators.floor.devices import DeviceFloor
from simulators.floor.sim import FloorSim, SimConfig
from simulators.hub import HubSim
from simulators.printer.sim import PrinterSimulator
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner

log = logging.getLogger("floorgate.demo")
ZONE = "zone-a"
# Who logs in with a password on the demo's pages: (operator_id, name, badge, role).
PAGE_USERS = (("s1", "Supervisor", "BADGE-S1", "supervisor"), ("t1", "Technician", "BADGE-T1", "technician"))
API_DOCS = "/api/v1/openapi.json"  # the API's schema (public by design; the gateway serves no Swagger UI)
MASTERDATA_WAIT_S = 120.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="a whole simulated floor with the gateway and its pages",
                       description="Runs the gateway with a simulated floor: broker, PTL bus, scanners, scales, "
                                   "a label printer, the hub simulator and pickers and packers at work.")
    p.add_argument("--orders", type=int, default=400, help="orders the hub sends over the run")
    p.add_argument("--pickers", type=int, default=4)
    p.add_argument("--packers", type=int, default=2)
    p.add_argument("--error-rate", type=float, default=0.03)
    p.add_argument("--speed", type=float, default=10.0, help="floor seconds per real second")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--data-dir", default="", help="default: a fresh temporary directory")
    p.add_argument("--headless", action="store_true", help="no live view; log lines and a final JSON report")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-broker", action="store_true",
                   help="run as without Mosquitto: no broker and no hub simulator, orders go in directly and the "
                        "gateway runs offline")
    p.set_defaults(func=_main)


class Demo:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.broker: Broker | None = None
        self.hub: HubSim | None = None
        self.app: App | None = None
        self.sim: FloorSim | None = None
        self.floor: DeviceFloor | None = None
        self.stop = asyncio.Event()
        # One-time passwords for the supervisor and technician pages, made afresh for every run.
        self.passwords = {op: secrets.token_urlsafe(9) for op, *_ in PAGE_USERS}

    def page_users(self) -> list[dict[str, Any]]:
        """The demo's supervisor and technician in master data form, with only the hash of their password."""
        return [{"operator_id": op, "name": name, "badge": badge, "roles": [role], "zones": [ZONE],
                 "password_hash": hash_password(self.passwords[op])} for op, name, badge, role in PAGE_USERS]

    async def run(self) -> dict[str, Any]:
        a = self.args
        if a.no_broker:
            log.warning("--no-broker: the gateway runs offline (no hub), orders are fed directly")
        elif available():
            self.broker = Broker(self.work / "broker").start()
        else:
            log.warning("mosquitto is not installed: the gateway runs offline (no hub), orders are fed directly")
        cat_skus = 40
        ptl = PtlSimulator(range(1, cat_skus + 1), transport="tcp")
        printer = PrinterSimulator(directory=self.work / "labels")
        scanners = {f"pick-scan-{k}": VirtualSerialScanner(terminator="crlf") for k in range(1, a.pickers + 1)}
        scanners.update({f"pack-scan-{k}": VirtualSerialScanner(terminator="crlf") for k in range(1, a.packers + 1)})
        scales = {f"pack-{k}": ScaleSimulator(unit="g") for k in range(1, a.packers + 1)}
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(ptl)
            await stack.enter_async_context(printer)
            for sc in scales.values():
                await stack.enter_async_context(sc)
            for vs in scanners.values():
                vs.plug()
                stack.callback(vs.close)
            cfg = parse_config({
                "data_dir": str(self.work / "gateway"),
                "mqtt": {"port": self.broker.port if self.broker else free_port()},
                "http": {"host": "127.0.0.1", "port": a.http_port},
                "ptl": {"buses": [{"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": ptl.port}]},
                "scanners": [{"id": d, "port": vs.path, "station": "pick" if d.startswith("pick") else
                              f"pack-{d.rsplit('-', 1)[1]}", "good_feedback": "06", "bad_feedback": "15"}
                             for d, vs in scanners.items()],
                "scales": [{"id": f"scale-{k}", "station": st, "port": sc.path}
                           for k, (st, sc) in enumerate(scales.items(), start=1)],
                "printers": [{"id": f"printer-{k}", "station": f"pack-{k}", "host": "127.0.0.1", "port": printer.port}
                             for k in range(1, a.packers + 1)],
                "picking": {"idle_logout_min": 600},
            }, "<demo>")
            self.app = app = App(cfg, SystemClock(), connect_mqtt=self.broker is not None, daily_checks=False)
            app_task = asyncio.create_task(app.run(install_signals=False), name="demo-gateway")
            stack.push_async_callback(self._stop_task, app_task, app)
            async with asyncio.timeout(30):
                await app.ready.wait()
            if self.broker is not None:
                self.hub = HubSim(MqttSettings(port=self.broker.port, client_id="hubsim-demo"), cfg.site, cfg.gateway)
                hub_task = asyncio.create_task(self.hub.run(), name="demo-hub")
                stack.push_async_callback(self._cancel, hub_task)
                async with asyncio.timeout(30):
                    await self.hub.mqtt.connected.wait()
            self.floor = DeviceFloor(app, self.hub, ptl, scanners, scales, speed=a.speed)
            sim_cfg = SimConfig(orders=a.orders, pickers=a.pickers, packers=a.packers, error_rate=a.error_rate,
                                seed=a.seed, arrival_min=a.orders / 6.0, has_scale=True)
            self.sim = FloorSim(self.floor, sim_cfg)
            users = {u["operator_id"]: u for u in await asyncio.to_thread(self.page_users)}  # argon2: off the loop
            self.sim.catalog.operators = [o for o in self.sim.catalog.operators if o["operator_id"] not in users]
            self.sim.catalog.operators += users.values()
            sim_task = asyncio.create_task(self.sim.run(), name="demo-floor")
            await self._masterdata_in(sim_task)
            self._urls(cfg.http.port)
            view_task = asyncio.create_task(self._view(), name="demo-view")
            stopper = asyncio.create_task(self.stop.wait(), name="demo-stop")
            try:
                async with asyncio.timeout(a.seconds or None):
                    await asyncio.wait([sim_task, stopper], return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                pass
            for t in (sim_task, view_task, stopper):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            return await self._final_report()
        return {}

    async def _masterdata_in(self, sim_task: asyncio.Task[Any]) -> None:
        """Until the page users are in the gateway's master data (so the banner's logins work when printed)."""
        app = self.app
        assert app is not None and app.service is not None
        operators = app.service.floor.md.operators
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(MASTERDATA_WAIT_S):
                while not all(op in operators for op, *_ in PAGE_USERS) and not sim_task.done() \
                        and not self.stop.is_set():
                    await asyncio.sleep(0.1)
                    operators = app.service.floor.md.operators

    async def _stop_task(self, task: asyncio.Task[None], app: App) -> None:
        app.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await task

    async def _cancel(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def _urls(self, port: int) -> None:
        """The banner: the pages, and the one place the page passwords of this run are shown (a terminal
        print, deliberately not a log line)."""
        base = f"http://127.0.0.1:{port}"
        login = {op: f"log in: {op} / {self.passwords[op]}" for op, *_ in PAGE_USERS}
        lines = ["Floorgate demo running. Ctrl-C stops.",
                 f"  PDA         {base}/pda  (the simulated pickers use badges BADGE-P1...)",
                 f"  Packing     {base}/pack/pack-1",
                 f"  Supervisor  {base}/supervisor  {login['s1']}",
                 f"  Technician  {base}/technician  {login['t1']}",
                 f"  API         {base}{API_DOCS}  (OpenAPI schema of {base}/api/v1)",
                 "  (the passwords are made afresh for this run and shown only here)"]
        if self.broker is None:
            lines.append("No MQTT broker (mosquitto not installed, or --no-broker): running offline.")
        print("\n".join(lines), flush=True)

    def summary(self) -> dict[str, Any]:
        app = self.app
        assert app is not None and app.service is not None and app.journal is not None
        floor = app.service.floor
        states = Counter(o.state for o in floor.orders.values())
        # A PTL bus's state is its link's (as on the technician page): its registry entry carries no status, and
        # counted as is it showed the whole demo one device short ("49 / 50").
        buses = app.fleet.ptl.buses if app.fleet is not None and app.fleet.ptl is not None else {}
        online = sum(d.online for d in app.registry.devices.values() if d.device_id not in buses)
        online += sum(bus.link_up for bus in buses.values())
        out: dict[str, Any] = {"orders": dict(states), "last_seq": app.journal.last_seq, "devices_online": online,
                               "devices": len(app.registry.devices), "alarms": len(floor.alarms)}
        if self.hub is not None:
            view = self.hub.journals.get(app.journal.journal_id)
            out["hub_contiguous_to"] = view.watermark if view else 0
            out["hub_duplicates"] = self.hub.duplicates
        if self.sim is not None:
            out["errors_made"] = sum(self.sim.report.errors_made.values())
            out["caught_at_pick"] = sum(self.sim.report.caught_at_pick.values())
            out["caught_at_pack"] = sum(self.sim.report.caught_at_pack.values())
        out["pickers"] = [(p.operator_id, round(p.score), p.breaker, p.open_tasks)
                          for p in floor.dispatch.pickers()]
        return out

    async def _view(self) -> None:
        if self.args.headless:
            while True:
                await asyncio.sleep(10)
                log.info("demo", extra={"fields": {k: v for k, v in self.summary().items() if k != "pickers"}})
        from rich.live import Live
        from rich.table import Table

        def render() -> Table:
            s = self.summary()
            t = Table(title="Floorgate demo", show_header=False, expand=False)
            t.add_column("what")
            t.add_column("value")
            for state, n in sorted(s["orders"].items()):
                t.add_row(f"orders {state}", str(n))
            t.add_row("events journaled", str(s["last_seq"]))
            if "hub_contiguous_to" in s:
                t.add_row("events at the hub (seq contiguous to)", str(s["hub_contiguous_to"]))
            t.add_row("devices online", f"{s['devices_online']} / {s['devices']}")
            t.add_row("alarms up", str(s["alarms"]))
            t.add_row("picker errors / caught at shelf / at packing",
                      f"{s.get('errors_made', 0)} / {s.get('caught_at_pick', 0)} / {s.get('caught_at_pack', 0)}")
            for op, score, breaker, tasks in s["pickers"]:
                t.add_row(f"picker {op}", f"index {score}, breaker {breaker}, {tasks} task(s)")
            return t

        with Live(render(), refresh_per_second=2) as live:
            while True:
                await asyncio.sleep(0.5)
                live.update(render())

    async def _final_report(self) -> dict[str, Any]:
        app = self.app
        assert app is not None and app.journal is not None
        journal = app.journal
        hub = self.hub
        if hub is not None:
            # The gateway still runs and may still commit: the target is re-read on every check.
            with contextlib.suppress(TimeoutError):
                await hub.wait_until(lambda: hub.holds(journal.last_seq), 30)
        # No await from here on: the journal's last_seq and the hub's view are taken at the same moment.
        report: dict[str, Any] = {"demo": self.summary()}
        if hub is not None:
            report["hub"] = hub.report()
            report["hub_holds_all"] = hub.holds(journal.last_seq)
        if self.sim is not None:
            report["floor"] = self.sim._finish().as_dict()
        return report


def _main(args: argparse.Namespace) -> int:
    setup_logging("warning" if not args.headless else "info")
    if args.data_dir:
        work = Path(args.data_dir)
        work.mkdir(parents=True, exist_ok=True)
        return _run(args, work)
    with tempfile.TemporaryDirectory(prefix="floorgate-demo-") as d:
        return _run(args, Path(d))


def _run(args: argparse.Namespace, work: Path) -> int:
    demo = Demo(args, work)

    async def go() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        # SIGHUP too: the terminal running `./dev demo` closed. It killed the demo on the spot (no report, no
        # lights off) and left its broker running, started in a session of its own.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, demo.stop.set)
        try:
            return await demo.run()
        finally:
            if demo.broker is not None:
                demo.broker.stop()

    report = asyncio.run(go())
    print(json.dumps(report, ensure_ascii=False))
    return 0
