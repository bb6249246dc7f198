"""The simulated floor working the gateway through its devices, in real time: pickers and packers type on
virtual serial scanners (ptys), press keys on the simulated PTL modules (Modbus TCP), and parcels sit on
simulated scales. Commands come from the hub simulator over MQTT. This is what `floorgate demo` runs."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.app import App
from gateway.domain.api import apply_command
from gateway.domain.commands import COMMANDS
from gateway.domain.floor import Floor
from gateway.domain.model import Light
from gateway.domain.outcome import Outcome, attempt
from gateway.domain.packing import abandon
from gateway.domain.picking import key_press
from simulators.floor.world import Unit
from simulators.hub import HubSim
from simulators.ptl.sim import PtlSimulator
from simulators.scale.sim import ScaleSimulator
from simulators.scanner.serial_sim import VirtualSerialScanner

WAIT_S = 15.0
# How long a picker looks for the line's light before using the PDA (real seconds): a line queued behind another
# picker's on the same module is not lit, and waiting WAIT_S for it froze the whole simulated floor (it acts one
# step at a time) while the other picker could not finish.
LIGHT_WAIT_S = 1.0


class DeviceFloor:
    def __init__(self, app: App, hub: HubSim | None, ptl: PtlSimulator,
                 scanners: dict[str, VirtualSerialScanner], scales: dict[str, ScaleSimulator],
                 speed: float = 10.0) -> None:
        self.app = app
        self.hub = hub
        self.ptl = ptl
        self.scanners = scanners
        self.scales = scales
        self.speed = speed  # simulated seconds per real second
        self.n = 0
        self.stuck = 0  # actions the devices did not answer in time

    @property
    def floor(self) -> Floor:
        assert self.app.service is not None
        return self.app.service.floor

    def now(self) -> float:
        return asyncio.get_running_loop().time() * self.speed

    async def until(self, t: float) -> None:
        delay = (t - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    async def _wait(self, pred: Any, seconds: float = WAIT_S, *, stuck: bool = True) -> bool:
        try:
            async with asyncio.timeout(seconds):
                while not pred():  # noqa: ASYNC110 - the state spans devices and the gateway
                    await asyncio.sleep(0.01)
            return True
        except TimeoutError:
            self.stuck += stuck
            return False

    async def command(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        if self.hub is not None:
            r = await self.hub.command(name, payload, timeout=120)
            if name in ("masterdata.sync", "order.upsert_batch"):
                return await self.hub.wait_result(r["cmd_id"], timeout=300, count=2)
            return r
        service = self.app.service  # no broker on this machine: the hub's commands go in directly
        assert service is not None
        c = COMMANDS[name].model_validate({"cmd_id": f"demo-{self.n}", **payload})
        at = service.at()
        return await service.execute_command(name, c.cmd_id, lambda f, ch: apply_command(f, ch, c, at))

    async def scan(self, device: str, station: str, unit_or_text: Unit | str) -> Outcome:
        if isinstance(unit_or_text, Unit):
            text, aim = unit_or_text.barcode()
        else:
            text, aim = unit_or_text, None
        info = self.app.registry.devices[device]
        before = info.scans
        await self.scanners[device].scan(text, aim=aim or "")
        if not await self._wait(lambda: info.scans > before):
            return Outcome.bad("not_allowed", "the scanner did not answer")
        assert self.app.fleet is not None
        return self.app.fleet.scanners[device].outcomes[-1]

    def _light_of(self, task_id: str, line_no: int) -> Light | None:
        ptl = self.app.fleet.ptl if self.app.fleet is not None else None
        if ptl is None:
            return None
        for light, (_, key) in ptl.shown.items():
            if key[0] == task_id and key[1] == line_no:
                return light
        return None

    async def key(self, task_id: str, line_no: int, kind: str, qty: int, adjusted: bool) -> Outcome:
        await self._wait(lambda: self._light_of(task_id, line_no) is not None, LIGHT_WAIT_S, stuck=False)
        light = self._light_of(task_id, line_no)
        if light is None:  # no module for this line (or it waits for one): the picker uses the PDA
            return await self._pda(task_id, line_no, kind, qty, adjusted)
        node = self.ptl.module(light.unit)
        ptl_devices = self.app.fleet.ptl if self.app.fleet else None

        def showing() -> bool:
            """The module shows the gateway's job as it is now (the count after the last scan, its token): a
            press on the display before that (the new job still on the wire) is stale, and the gateway rightly
            drops it, as a real module's would be."""
            shown = ptl_devices.shown.get(light) if ptl_devices is not None and light is not None else None
            return node.mode == 1 and (shown is None or node.token == shown[0])
        await self._wait(showing)
        if adjusted and qty != node.quantity:
            self.ptl.adjust(light.unit, qty - node.shown_quantity)
        before = self.app.fleet.ptl.presses if self.app.fleet and self.app.fleet.ptl else 0
        self.ptl.press(light.unit, kind)
        ptl = self.app.fleet.ptl if self.app.fleet else None
        ok = await self._wait(lambda: ptl is not None and ptl.presses > before)
        order = self.floor.tasks[task_id].order_id if task_id in self.floor.tasks else None
        line = self.floor.orders[order].line(line_no) if order else None
        await self._wait(lambda: line is None or line.done)
        return Outcome.good("pressed") if ok else Outcome.bad("not_allowed", "the module did not answer")

    async def _pda(self, task_id: str, line_no: int, kind: str, qty: int, adjusted: bool) -> Outcome:
        service = self.app.service
        assert service is not None
        at = service.at()
        return await service.execute(lambda f, c: key_press(f, c, task_id, line_no, kind, qty, adjusted, "pda", at))

    async def place(self, station: str, grams: float) -> None:
        scale = self.scales.get(station)
        if scale is None:
            return
        if grams <= 0:
            # Taken off: the display shows zero before the next carton goes on (the gateway weighs a parcel
            # only on a scale seen empty since the last one). Not read when no parcel was weighed: no wait then.
            fleet = self.app.fleet
            device = next((d for d in fleet.scales.values() if d.cfg.station == station), None) if fleet else None
            if device is None or not device.needs_empty:
                scale.put(0.0)
            else:
                await scale.take_off(WAIT_S)
            return
        scale.put(round(grams, 1))

    async def weigh(self, station: str, grams: float) -> Outcome:
        st = self.floor.stations.get(station)
        order_id = st.order_id if st else None
        await self._wait(lambda: st is None or not st.awaiting_weight)
        if order_id is not None and self.floor.orders[order_id].state == "packed":
            return Outcome.good("packed")
        return Outcome.bad("not_allowed", "weight review")

    async def abandon(self, station: str) -> Outcome:
        service = self.app.service
        assert service is not None
        at = service.at()
        return await service.execute(lambda f, c: attempt(c, lambda e: abandon(f, e, station, "s1", at)))

    async def tick(self) -> None:
        """The gateway's own ticker runs dispatch; nothing to do here."""
