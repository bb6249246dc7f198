"""The gateway's PTL coordinator over real Modbus frames to the PTL simulator (TCP and RTU on a pty): jobs
light the right module in the picker's colour with the quantity and a token; a wrong scan shows the error
signal, then the job again; the last unit gives the done acknowledgement; a press confirms exactly once; a
module that vanishes goes offline and comes back with its light restored."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.ptl import KeyPress
from firmware_stubs.ptl_node.registers import EX_ILLEGAL_ADDRESS, ModbusError
from gateway.app import App
from gateway.clock import SystemClock
from gateway.devices.ptl import PtlDevices
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from gateway.domain.model import DeviceState
from gateway.domain.scanning import ScanInput, handle_scan
from simulators.ptl.sim import PtlSimulator
from tests.conftest import LOCATIONS, OPERATORS, SKUS, make_config


async def until(pred: Callable[[], bool], what: str, timeout: float = 20) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not pred():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Floor:
    def __init__(self, app: App, sim: PtlSimulator) -> None:
        self.app, self.sim = app, sim
        assert app.service is not None
        self.service = app.service
        self.n = 0

    async def cmd(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        c = COMMANDS[name].model_validate({"cmd_id": f"c{self.n}", **payload})
        at = self.service.at()
        return await self.service.execute_command(name, c.cmd_id, lambda f, ch: apply_command(f, ch, c, at))

    async def scan(self, text: str) -> Any:
        at = self.service.at()
        s = ScanInput("pda-1", "pick", text, None, text)
        return await self.service.execute(lambda f, c: handle_scan(f, c, s, at, False))

    def events(self, typ: str) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.service.journal.path)
        try:
            rows = [json.loads(b) for (b,) in conn.execute("SELECT body FROM events ORDER BY seq")]
        finally:
            conn.close()
        return [r["data"] for r in rows if r["type"] == typ]


@contextlib.asynccontextmanager
async def floor(tmp_path: Path, transport: str, error_signal_ms: int = 300) -> AsyncIterator[Floor]:
    async with PtlSimulator(range(1, 9), transport=transport) as sim:  # type: ignore[arg-type]
        bus: dict[str, Any] = {"id": "bus-a", "transport": transport, "poll_ms": 20, "timeout_ms": 100}
        if transport == "tcp":
            bus.update(host="127.0.0.1", port=sim.port)
        else:
            bus.update(port=sim.path, baudrate=115200)
        cfg = make_config(tmp_path, ptl={"buses": [bus]}, picking={"error_signal_ms": error_signal_ms})
        app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
        task = asyncio.create_task(app.run(install_signals=False), name="ptl-test-gateway")
        try:
            await until(app.ready.is_set, "the gateway")
            f = Floor(app, sim)
            r = await f.cmd("masterdata.sync", {"mode": "replace", "sync_id": "m", "part": 1, "parts": 1,
                                                "skus": SKUS, "locations": LOCATIONS, "operators": OPERATORS})
            assert r["ok"]
            yield f
        finally:
            app.stop()
            await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
async def test_job_error_signal_press_and_done(tmp_path: Path, transport: str) -> None:
    async with floor(tmp_path, transport) as f:
        node = f.sim.module(1)
        assert (await f.scan("BADGE-P1")).ok
        await f.cmd("order.upsert", {"order": {"order_id": "O-1", "lines": [{"line_no": 1, "sku": "SKU-1",
                                                                               "qty": 3}]}})
        assert f.app.ticker is not None
        f.app.ticker.poke()
        await until(lambda: node.mode == 1, "the job on module 1")
        assert (node.quantity, node.colour, node.pattern) == (3, 2, 0) and node.token > 0  # 3, green, steady
        assert f.sim.module(2).mode == 0  # the other modules stay dark
        # A wrong scan: the error signal (mode 3, red, token kept), then the job again.
        token = node.token
        assert not (await f.scan("05012345678900")).ok
        await until(lambda: node.mode == 3, "the error signal")
        assert node.colour == 1 and node.token == token
        await until(lambda: node.mode == 1, "the job back after the error signal")
        # One unit scanned: the display shows two more, under a new token.
        assert (await f.scan("4006381333931")).ok
        await until(lambda: node.mode == 1 and node.quantity == 2, "the count down")
        assert node.token != token
        # The key: exactly one confirm, the done acknowledgement, then the module goes dark by itself.
        assert f.sim.press(1, "confirm")
        await until(lambda: f.service.floor.orders["O-1"].state == "picked", "the order picked")
        await f.service.journal.barrier()
        assert [(d["qty"], d["via"]) for d in f.events("pick.line_confirmed")] == [(3, "ptl_button")]
        await until(lambda: node.mode in (4, 0), "the done acknowledgement")
        await until(lambda: node.mode == 0, "the module to turn itself off")
        await asyncio.sleep(0.3)  # a few more polls: still one confirm, no phantom press
        await f.service.journal.barrier()
        assert len(f.events("pick.line_confirmed")) == 1


async def test_module_vanishes_others_keep_being_served_and_light_comes_back(tmp_path: Path) -> None:
    async with floor(tmp_path, "tcp") as f:
        assert (await f.scan("BADGE-P1")).ok
        await f.cmd("order.upsert", {"order": {"order_id": "O-1", "lines": [
            {"line_no": 1, "sku": "SKU-1", "qty": 2}, {"line_no": 2, "sku": "SKU-2", "qty": 1}]}})
        assert f.app.ticker is not None
        f.app.ticker.poke()
        m1, m2 = f.sim.module(1), f.sim.module(2)
        await until(lambda: m1.mode == 1 and m2.mode == 1, "both jobs lit")
        f.sim.set_gone(1)
        await until(lambda: any(d["device_id"] == "bus-a-u001" for d in f.events("device.offline")),
                    "module 1 offline")
        served = f.sim.served[2]
        await until(lambda: f.sim.served[2] > served + 20, "module 2 still served")
        f.sim.reboot(1)  # it comes back with its state lost
        f.sim.set_gone(1, False)
        await until(lambda: any(d["device_id"] == "bus-a-u001" for d in f.events("device.online")
                                if d["detail"] == "answering"), "module 1 online again")
        await until(lambda: m1.mode == 1 and m1.quantity == 2, "its light restored")


async def test_a_shelf_moved_to_another_module_takes_its_light_along(tmp_path: Path) -> None:
    """Master data re-wires a lit shelf to module 6 (a merge of one location): module 6 shows the line at once
    and module 1, which no location names any more, goes dark (before the fix it kept the job, and a press there
    could confirm the line); a scan counts down on module 6 and a press there confirms."""
    async with floor(tmp_path, "tcp") as f:
        assert (await f.scan("BADGE-P1")).ok
        await f.cmd("order.upsert", {"order": {"order_id": "O-1", "lines": [{"line_no": 1, "sku": "SKU-1",
                                                                               "qty": 2}]}})
        assert f.app.ticker is not None
        f.app.ticker.poke()
        m1, m6 = f.sim.module(1), f.sim.module(6)
        await until(lambda: m1.mode == 1 and m1.quantity == 2, "the job on module 1")
        assert m6.mode == 0
        moved = [{**loc, "light": {"bus": "bus-a", "unit": 6}} for loc in LOCATIONS if loc["code"] == "A-01-01"]
        r = await f.cmd("masterdata.sync", {"mode": "merge", "sync_id": "rewire", "part": 1, "parts": 1,
                                            "locations": moved})
        assert r["ok"] and not r["rejected"], r
        await until(lambda: m6.mode == 1 and m6.quantity == 2, "the job on module 6")
        await until(lambda: m1.mode == 0, "module 1 dark")
        assert not f.sim.press(1, "confirm"), "the dark module took a key"
        assert (await f.scan("4006381333931")).ok  # the item scanned: a key may now confirm the line
        await until(lambda: m6.mode == 1 and m6.quantity == 1, "the count down on module 6")
        assert m1.mode == 0
        assert f.sim.press(6, "confirm")
        await until(lambda: f.service.floor.orders["O-1"].state == "picked", "the order picked")
        await f.service.journal.barrier()
        assert [(d["qty"], d["via"]) for d in f.events("pick.line_confirmed")] == [(2, "ptl_button")]


async def test_a_press_on_the_module_a_line_left_during_its_error_signal_confirms_nothing(tmp_path: Path) -> None:
    """The shelf moves while its module shows the error signal of a wrong scan: the error signal keeps the job's
    token until it ends, so a press read from that module under that token must not confirm the line, which is
    now on module 6."""
    async with floor(tmp_path, "tcp", error_signal_ms=60_000) as f:
        assert f.app.fleet is not None and f.app.fleet.ptl is not None and f.app.ticker is not None
        ptl = f.app.fleet.ptl
        assert (await f.scan("BADGE-P1")).ok
        await f.cmd("order.upsert", {"order": {"order_id": "O-1", "lines": [{"line_no": 1, "sku": "SKU-1",
                                                                               "qty": 2}]}})
        f.app.ticker.poke()
        m1, m6 = f.sim.module(1), f.sim.module(6)
        await until(lambda: m1.mode == 1 and m1.quantity == 2, "the job on module 1")
        assert not (await f.scan("05012345678900")).ok  # the wrong item: module 1 shows the error signal
        await until(lambda: m1.mode == 3, "the error signal")
        token = m1.token
        moved = [{**loc, "light": {"bus": "bus-a", "unit": 6}} for loc in LOCATIONS if loc["code"] == "A-01-01"]
        assert (await f.cmd("masterdata.sync", {"mode": "merge", "sync_id": "rewire", "part": 1, "parts": 1,
                                                "locations": moved}))["ok"]
        await until(lambda: m6.mode == 1 and m6.quantity == 2, "the job on module 6")
        assert m1.mode == 3  # still the error signal, under the old token
        assert (await f.scan("4006381333931")).ok  # the right item: a key may now confirm the line
        await until(lambda: m6.quantity == 1, "the count down on module 6")
        presses = ptl.presses
        # What the bus reports for a key latched on module 1 under the token it still shows, handled as the
        # coordinator handles every key the bus reports.
        await ptl._handle("key", KeyPress("bus-a", 1, token, "confirm", 2, False))
        assert ptl.presses == presses and f.service.floor.orders["O-1"].state != "picked"
        assert f.sim.press(6, "confirm")
        await until(lambda: f.service.floor.orders["O-1"].state == "picked", "the order picked")
        await f.service.journal.barrier()
        assert ptl.presses == presses + 1, "the press on the module the line left confirmed it"
        assert [(d["qty"], d["via"]) for d in f.events("pick.line_confirmed")] == [(2, "ptl_button")]


async def test_press_latched_before_a_restart_does_not_confirm_the_job_after_it(tmp_path: Path) -> None:
    """A gateway restart (a new coordinator and bus driver against the same modules) must not take a key
    press latched under the old process's token for a confirm of what the new process shows, even where
    the new process happens to show the same line: nobody pressed on a display it wrote."""
    async with PtlSimulator(range(1, 9), transport="tcp") as sim:
        bus: dict[str, Any] = {"id": "bus-a", "transport": "tcp", "host": "127.0.0.1", "port": sim.port,
                               "poll_ms": 20, "timeout_ms": 100}
        cfg = make_config(tmp_path, ptl={"buses": [bus]})
        node = sim.module(1)

        # The old process: the job lit, then the module drops off the bus, its key is pressed (latched
        # under the old process's token), the item is scanned, and the gateway goes away before it could
        # read the press.
        app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
        task = asyncio.create_task(app.run(install_signals=False), name="ptl-gateway-before-restart")
        try:
            await until(app.ready.is_set, "the gateway")
            f = Floor(app, sim)
            assert (await f.cmd("masterdata.sync", {"mode": "replace", "sync_id": "m", "part": 1, "parts": 1,
                                                    "skus": SKUS, "locations": LOCATIONS,
                                                    "operators": OPERATORS}))["ok"]
            assert (await f.scan("BADGE-P1")).ok
            await f.cmd("order.upsert", {"order": {"order_id": "O-1", "lines": [
                {"line_no": 1, "sku": "SKU-1", "qty": 3}]}})
            assert app.ticker is not None
            app.ticker.poke()
            await until(lambda: node.mode == 1, "the job on module 1")
            old_token = node.token
            sim.set_gone(1)
            assert sim.press(1, "confirm")
            assert node.status() & 0x1 and node.token_echo == old_token
            assert (await f.scan("4006381333931")).ok  # the item scanned: a key may now confirm the line
        finally:
            app.stop()
            await asyncio.wait_for(task, 30)
        sim.set_gone(1, False)
        assert node.status() & 0x1, "the press is still latched on the module"

        # The new process, against the same modules and the same journal.
        app = App(cfg, SystemClock(), connect_mqtt=False, web=False, daily_checks=False)
        task = asyncio.create_task(app.run(install_signals=False), name="ptl-gateway-after-restart")
        try:
            await until(app.ready.is_set, "the gateway after the restart")
            f = Floor(app, sim)
            assert app.fleet is not None and app.fleet.ptl is not None
            driver = app.fleet.ptl.buses["bus-a"]
            await until(lambda: node.mode == 1 and node.status() & 0x3 == 0, "the job shown, the stale latch cleared")
            polls = driver.stats.modules[1].polls
            await until(lambda: driver.stats.modules[1].polls >= polls + 5, "a few more polls")
            await f.service.journal.barrier()
            assert f.events("pick.line_confirmed") == []
            assert f.service.floor.orders["O-1"].state != "picked"
            assert driver.stats.modules[1].stale_keys == 1 and driver.stats.modules[1].key_events == 0
            # A press on what the new process shows confirms it, exactly once.
            assert sim.press(1, "confirm")
            await until(lambda: f.service.floor.orders["O-1"].state == "picked", "the order picked")
            await f.service.journal.barrier()
            assert [(d["qty"], d["via"]) for d in f.events("pick.line_confirmed")] == [(3, "ptl_button")]
        finally:
            app.stop()
            await asyncio.wait_for(task, 30)


async def test_a_module_reporting_a_fault_raises_an_alarm_until_it_reports_none(tmp_path: Path) -> None:
    """The fault bit (IR 0 bit 8) was shown on the technician page only: no log line, event or alarm. It raises
    a `device_fault` alarm once per change and clears it, also after a restart when the module comes back
    healthy (the alarm is kept across the restart, the module's state is not)."""
    alarm = "device_fault:bus-a-u003"

    def count(f: Floor, typ: str) -> int:
        return sum(1 for d in f.events(typ) if d["alarm_id"] == alarm)

    async with floor(tmp_path, "tcp") as f:
        f.sim.set_fault_bit(3, True)
        await until(lambda: count(f, "alarm.raised") == 1, "the fault alarm")
        assert f.service.floor.alarms[alarm].code == "device_fault"
        f.sim.set_fault_bit(3, False)
        await until(lambda: count(f, "alarm.cleared") == 1, "the alarm cleared")
        f.sim.set_fault_bit(3, True)
        await until(lambda: count(f, "alarm.raised") == 2, "raised again")
        served = f.sim.served[3]
        await until(lambda: f.sim.served[3] > served + 5, "the faulty module still served")
    async with floor(tmp_path, "tcp") as f:  # a new simulator: the module answers without a fault
        await until(lambda: count(f, "alarm.cleared") == 2, "cleared after the restart")
        assert alarm not in f.service.floor.alarms
        assert count(f, "alarm.raised") == 2


async def test_a_module_that_refuses_its_job_write_is_one_fault_alarm_not_a_flood(tmp_path: Path) -> None:
    """A module of another register map answers its polls and refuses the job write. It went offline and
    online about 5 times a second, each a journaled `device.offline` / `device.online` for the hub, and kept
    for 72 h. Now it is one `device_fault` alarm that says why, and it clears once a write is taken."""
    alarm = "device_fault:bus-a-u003"
    async with floor(tmp_path, "tcp") as f:
        node = f.sim.module(3)
        takes = node.write_holding

        def refuse(addr: int, values: list[int], now_ms: int) -> None:
            raise ModbusError(EX_ILLEGAL_ADDRESS, "no such register in this layout")
        node.write_holding = refuse  # type: ignore[method-assign]
        f.sim.reboot(3)  # its state is lost: the gateway writes it again, and is refused
        await until(lambda: alarm in f.service.floor.alarms, "the fault alarm")
        assert "refuses its job write (exception 2 (illegal data address) to function 16)" in \
            f.service.floor.alarms[alarm].message
        served = f.sim.served[3]
        await until(lambda: f.sim.served[3] > served + 20, "the module still polled")
        await f.service.journal.barrier()
        assert not [d for d in f.events("device.offline") if d.get("device_id") == "bus-a-u003"]
        node.write_holding = takes  # type: ignore[method-assign]
        await until(lambda: alarm not in f.service.floor.alarms, "the alarm cleared once a write is taken")


async def test_a_finished_line_is_acknowledged_before_the_next_on_its_module(tmp_path: Path) -> None:
    """The same picker's next line on the module (two orders of SKU-1 on a cart): the next job replaced `done`
    before it was written, in the same colour and here the same quantity, so the display never changed and
    nothing told the picker the next unit belongs to the other order's tote."""
    async with floor(tmp_path, "tcp") as f:
        node = f.sim.module(1)
        modes: list[int] = []
        write = node.write_holding

        def recording(addr: int, values: list[int], now_ms: int) -> None:
            write(addr, values, now_ms)
            if addr == 0:
                modes.append(values[0])
        node.write_holding = recording  # type: ignore[method-assign]
        assert (await f.scan("BADGE-P1")).ok
        for order_id, qty in (("O-1", 2), ("O-2", 1)):
            await f.cmd("order.upsert", {"order": {"order_id": order_id,
                                                   "lines": [{"line_no": 1, "sku": "SKU-1", "qty": qty}]}})
        assert f.app.ticker is not None
        f.app.ticker.poke()
        await until(lambda: all(t.operator_id == "p1" for t in f.service.floor.tasks.values()), "both assigned")
        assert (await f.scan("4006381333931")).ok
        assert (await f.scan("4006381333931")).ok  # O-1's last unit
        done_order = f.service.floor.orders["O-1"].state
        await until(lambda: node.mode == 1 and node.quantity == 1 and 4 in modes, "done, then O-2's job")
        assert done_order == "picked"
        assert modes[modes.index(4) + 1:].count(1) >= 1  # the next job came after the acknowledgement


async def test_the_bus_link_is_a_device_of_its_own(tmp_path: Path) -> None:
    """SPEC kind `bus`: a lost link (the PTL server gone, the RS-485 adapter pulled) was told only as each of its
    modules going offline, and telemetry always said the bus was offline. It is now `device.offline` and
    `device.online` with kind `bus`, once per change."""
    async with floor(tmp_path, "tcp") as f:
        devices = f.service.floor.devices
        await until(lambda: "bus-a" in devices and devices["bus-a"].online, "the bus online")
        assert devices["bus-a"].kind == "bus" and f.app.registry.devices["bus-a"].online
        await f.sim.stop()
        await until(lambda: not devices["bus-a"].online, "the bus offline")
        assert devices["bus-a"].detail.startswith("link down")
        await f.sim.start()
        await until(lambda: devices["bus-a"].online, "the bus back")

        def bus() -> list[tuple[str, str]]:
            return sorted((t, d["detail"].split(":")[0]) for t in ("device.online", "device.offline")
                          for d in f.events(t) if d["device_id"] == "bus-a" and d["kind"] == "bus")
        await until(lambda: len(bus()) >= 3, "the bus's events stored")
        assert bus() == [("device.offline", "link down"), ("device.online", "link up"), ("device.online", "link up")]


MODULES = ["bus-a-u001", "bus-a-u002", "bus-a-u003"]  # the modules LOCATIONS light


async def modules_online(f: Floor) -> tuple[PtlDevices, dict[str, DeviceState]]:
    """The PTL coordinator and the floor's device states, once every lit module is recorded online."""
    assert f.app.fleet is not None and f.app.fleet.ptl is not None
    devices = f.service.floor.devices
    await until(lambda: all(m in devices and devices[m].online for m in MODULES), "the modules online")
    return f.app.fleet.ptl, devices


def ptl_offline(f: Floor) -> list[str]:
    """The modules recorded offline so far, in order of id."""
    return sorted(d["device_id"] for d in f.events("device.offline") if d["kind"] == "ptl")


async def test_a_brief_link_drop_is_the_buss_event_alone_and_a_long_one_each_modules(tmp_path: Path) -> None:
    """A link that dropped for a moment (a TCP reconnect) wrote an offline and an online event for every module
    of the bus, 80 for 40 modules, besides the bus's own. Modules dark only because of the link are recorded
    offline once it has been down `link_grace_s`; back sooner, they never were."""
    async with floor(tmp_path, "tcp") as f:
        ptl, devices = await modules_online(f)
        ptl.link_grace_s = 3600.0  # brief, whatever the machine's speed
        await f.sim.stop()
        await until(lambda: not devices["bus-a"].online, "the bus offline")
        await until(lambda: not f.app.registry.devices["bus-a-u001"].online, "the module dark (live)")
        await f.sim.start()
        await until(lambda: devices["bus-a"].online, "the bus back")
        await until(lambda: all(f.app.registry.devices[m].online for m in MODULES), "the modules answering again")
        await f.service.journal.barrier()
        assert ptl_offline(f) == [] and all(devices[m].online for m in MODULES)
        ptl.link_grace_s = 0.2  # long: each dark module is recorded, once
        await f.sim.stop()
        await until(lambda: ptl_offline(f) == MODULES, "each module recorded offline")
        assert all(d["detail"].startswith("bus link down") for d in f.events("device.offline") if d["kind"] == "ptl")
        await f.sim.start()
        await until(lambda: all(devices[m].online for m in MODULES), "the modules recorded online again")
        assert ptl_offline(f) == MODULES


async def test_a_flaky_module_is_recorded_offline_only_when_it_stays_dark(tmp_path: Path) -> None:
    """A module losing replies in bursts went offline and online 5-6 times in 8 s, each change a journaled
    `device.offline` / `device.online` for the hub. Like a module dark because its bus link dropped, it is now
    recorded offline once it has been dark `link_grace_s` (live on the technician page at once)."""
    async with floor(tmp_path, "tcp") as f:
        ptl, devices = await modules_online(f)
        ptl.link_grace_s = 3600.0  # brief, whatever the machine's speed
        for _ in range(3):
            f.sim.set_gone(1)
            await until(lambda: not f.app.registry.devices["bus-a-u001"].online, "the module dark (live)")
            f.sim.set_gone(1, False)
            await until(lambda: f.app.registry.devices["bus-a-u001"].online, "the module answering again")
        await f.service.journal.barrier()
        assert ptl_offline(f) == [] and devices["bus-a-u001"].online
        ptl.link_grace_s = 0.2  # long: recorded, once
        f.sim.set_gone(1)
        await until(lambda: ptl_offline(f) == ["bus-a-u001"], "the module recorded offline")
        f.sim.set_gone(1, False)
        await until(lambda: devices["bus-a-u001"].online, "recorded online again")
        assert ptl_offline(f) == ["bus-a-u001"]


async def test_each_dark_module_has_its_own_grace_from_when_it_went_dark(tmp_path: Path) -> None:
    """From a review: the bus's grace timer ran from its first drop. A module that did not come back kept it
    running, and a second, brief drop was recorded for every module when that old timer fired. The grace's clock
    is moved by hand here (far ahead of the loop's, so its real timer never fires during the test)."""
    async with floor(tmp_path, "tcp") as f:
        ptl, _ = await modules_online(f)
        now = [asyncio.get_running_loop().time() + 10_000]
        ptl._loop_time = lambda: now[0]  # type: ignore[method-assign]
        ptl.link_grace_s = 10.0

        def dark() -> set[int]:
            return set(ptl._link_dark.get("bus-a", {}))
        await f.sim.stop()  # drop 1, at 0 s
        await until(lambda: dark() == {1, 2, 3}, "three modules dark")
        f.sim.remove_module(3)  # it does not come back (a fault of its own)
        await f.sim.start()
        await until(lambda: dark() == {3}, "modules 1 and 2 back")
        now[0] += 5
        await f.sim.stop()  # drop 2, at 5 s: modules 1 and 2 have until 15 s
        await until(lambda: dark() == {1, 2, 3}, "modules 1 and 2 dark again")
        now[0] += 6  # 11 s: module 3's grace is over, not theirs
        await ptl._after_link_grace("bus-a")
        await f.service.journal.barrier()
        assert ptl_offline(f) == ["bus-a-u003"]
        assert dark() == {1, 2}
        await f.sim.start()
        await until(lambda: dark() == set(), "modules 1 and 2 back again")
        await f.service.journal.barrier()
        assert ptl_offline(f) == ["bus-a-u003"]


async def test_a_location_lit_on_a_bus_the_config_lacks_raises_an_alarm(tmp_path: Path) -> None:
    """A bus id mistyped in master data (or missing from the config): the location's lines were picked without a
    light, and nobody was told."""
    async with floor(tmp_path, "tcp") as f:
        alarms = f.service.floor.alarms
        assert "ptl_unknown_bus" not in alarms
        wrong = {"code": "Z-01-01", "zone": "zone-a", "sku": "SKU-2", "light": {"bus": "bus-z", "unit": 1}}
        r = await f.cmd("masterdata.sync", {"mode": "merge", "sync_id": "z", "part": 1, "parts": 1,
                                            "locations": [wrong]})
        assert r["ok"]
        await until(lambda: "ptl_unknown_bus" in alarms, "the alarm")
        assert "bus-z" in alarms["ptl_unknown_bus"].message and "bus-a" in alarms["ptl_unknown_bus"].message
        r = await f.cmd("masterdata.sync", {"mode": "replace", "sync_id": "m2", "part": 1, "parts": 1,
                                            "skus": SKUS, "locations": LOCATIONS, "operators": OPERATORS})
        assert r["ok"]
        await until(lambda: "ptl_unknown_bus" not in alarms, "the alarm cleared")
