"""Packing stations' devices: the scale that weighs a verified parcel, and the label printer that prints
its SSCC as a GS1-128 label once the parcel is packed (after the commit that issued the SSCC)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from drivers.printer import PrinterError, RawTcpPrinter
from drivers.scale import ScaleBusy, ScaleError, ScaleTimeout, ScaleUnderload, SerialScale, Weighing
from gateway.config import Config, PrinterConfig, ScaleConfig
from gateway.devices.registry import DeviceRegistry
from gateway.devices.status import store_status
from gateway.domain.change import Change
from gateway.domain.devices import device_status, label_failed, label_printed
from gateway.domain.floor import Floor
from gateway.domain.label import ShippingLabel, render_zpl
from gateway.domain.outcome import Outcome, attempt
from gateway.domain.packing import EMPTY_SCALE_G, pack_weight, weight_awaited
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.packing")

WEIGH_TIMEOUT_S = 30.0  # for the packer to put the parcel on (and take the last one off first) and for it to settle
OFF_POLL_S = 0.25  # how often the scale is read while the last parcel weighed may still be on it


class ScaleDevice:
    def __init__(self, cfg: ScaleConfig, service: FloorService, registry: DeviceRegistry) -> None:
        self.cfg = cfg
        self.name = f"scale-{cfg.id}"
        self.service = service
        self.registry = registry
        registry.add(cfg.id, "scale")
        self._requests: asyncio.Queue[str] = asyncio.Queue()
        self._status: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
        self.scale = SerialScale(cfg.port, baudrate=cfg.baudrate, mode=cfg.mode, name=cfg.id,
                                 on_status=lambda online, detail: self._status.put_nowait((online, detail)))
        self.outcomes: list[Outcome] = []
        # The last parcel weighed, until the scale is seen empty after it. Without this a parcel left on the
        # scale was weighed again as the next order's parcel: two orders of the same goods passed with one
        # parcel. A weighing waits for the scale to go empty first (the return-to-zero rule of shipping
        # scales); between parcels the scale is read every OFF_POLL_S until it is, so a packer who takes each
        # parcel off as they go never waits.
        self.parcel_on: float | None = None
        # Nor is a load there at the start taken for a parcel (a restart, or a SIGHUP that made the device anew,
        # with the last parcel still on the scale): the scale is read until it has been seen empty once.
        self.fresh = True
        self._parcel_weighed = asyncio.Event()
        self._parcel_weighed.set()
        self._weighing = False
        service.on_signal(self._on_signal)

    def _on_signal(self, signal: Any) -> None:
        if isinstance(signal, tuple) and signal[0] == "weigh" and signal[1] == self.cfg.station:
            self._requests.put_nowait(signal[2])

    async def run(self) -> None:
        await self.scale.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._report_status(), name=f"{self.name}-status")
                tg.create_task(self._watch_taken_off(), name=f"{self.name}-off")
                while True:
                    order_id = await self._requests.get()
                    await self.weigh(order_id)
        finally:
            await self.scale.close()

    async def _report_status(self) -> None:
        while True:
            online, detail = await self._status.get()
            await self._record_status(online, detail)

    async def _record_status(self, online: bool, detail: str) -> None:
        await store_status(self.service, self.registry, self.cfg.id, "scale", online, detail)

    async def _watch_taken_off(self) -> None:
        while True:
            await self._parcel_weighed.wait()
            if not self.needs_empty:
                self._parcel_weighed.clear()
                continue
            if not self._weighing:  # (a weighing reads the scale itself)
                # Offline or noise: the status path reports it, and a weighing still asks for an empty scale.
                with contextlib.suppress(ScaleError):
                    await self._load_on(timeout_s=2.0)
            await asyncio.sleep(OFF_POLL_S)

    @property
    def needs_empty(self) -> bool:
        return self.parcel_on is not None or self.fresh

    def _seen_empty(self) -> None:
        self.parcel_on, self.fresh = None, False

    async def _load_on(self, timeout_s: float) -> Weighing | None:
        """The load the scale carries now, or None when it is empty (and from then on none is waited for)."""
        try:
            w = await self.scale.read_immediate(timeout_s=timeout_s)
        except ScaleUnderload:  # below zero: nothing on it
            w = None
        if w is None or w.grams < EMPTY_SCALE_G:
            self._seen_empty()
            return None
        return w

    def _parcel_taken(self, grams: float) -> None:
        self.parcel_on = grams
        self._parcel_weighed.set()

    async def _load(self, station: str, order_id: str) -> Weighing | None:
        """A stable weight of this parcel: the scale first empty if the last parcel was not seen taken off,
        then loaded. An empty scale is not a parcel: before, a weighing started before the packer put the
        parcel down read 0 g and sent the order to a supervisor's review (-100%)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WEIGH_TIMEOUT_S
        told = False
        while (left := deadline - loop.time()) > 0:
            if not weight_awaited(self.service.floor, station, order_id):
                return None  # cancelled, set aside or weighed meanwhile: the next request is for the next parcel
            if self.needs_empty:
                try:
                    load = await self._load_on(timeout_s=min(2.0, left))
                except ScaleBusy:
                    await asyncio.sleep(OFF_POLL_S)
                    continue
                if load is None:
                    continue
                if not told:
                    told = True
                    since = (f"the last parcel ({self.parcel_on:g} g)" if self.parcel_on is not None
                             else "the gateway started")
                    self.service.notify(("station_feedback", station, False,
                                         f"the scale has not been empty since {since}; it reads {load.grams:g} g: take "
                                         "the parcel off, then put this order's parcel on"))
                await asyncio.sleep(OFF_POLL_S)
                continue
            w = await self.scale.read_stable(timeout_s=left)
            if w.grams >= EMPTY_SCALE_G:
                return w
            await asyncio.sleep(OFF_POLL_S)  # the page says "put the parcel on the scale" while it waits
        if self.needs_empty:
            raise ScaleError(f"the scale was not seen empty since the last parcel within {WEIGH_TIMEOUT_S:g} s; "
                             "take it off")
        raise ScaleTimeout(f"no parcel on the scale within {WEIGH_TIMEOUT_S:g} s")

    async def weigh(self, order_id: str) -> Outcome:
        station = self.cfg.station
        if not weight_awaited(self.service.floor, station, order_id):
            # Asked twice (the order scanned again while it was weighed) and packed by the first reading, or
            # cancelled meanwhile: nothing to weigh. Before, the second reading showed a red "not waiting for
            # a weight" over the packed result, and a reading for a cancelled order packed the next one.
            return Outcome.good(f"order {order_id} needs no weight now", "weight")
        self._weighing = True
        try:
            w = await self._load(station, order_id)
        except ScaleError as e:
            out = Outcome.bad("not_allowed", f"scale {self.cfg.id}: {e}; scan the order again to re-weigh")
            self.outcomes.append(out)
            self.service.notify(("station_feedback", station, False, out.message))
            return out
        finally:
            self._weighing = False
        if w is None:
            return Outcome.good(f"order {order_id} needs no weight now", "weight")
        at = self.service.at()

        def op(floor: Floor, change: Change) -> Outcome | None:
            if not weight_awaited(floor, station, order_id):
                return None  # the order left the scale while it settled (cancelled, set aside, weighed already)
            out = attempt(change, lambda eff: pack_weight(floor, eff, station, round(w.grams, 1), at))
            change.audit.append({"ts": at.ts, "kind": "weight", "device_id": self.cfg.id, "order_id": order_id,
                                 "raw": w.raw.decode("ascii", "replace") if isinstance(w.raw, bytes) else str(w.raw),
                                 "result": "ok" if out.ok else (out.code or "review"), "message": out.message,
                                 "grams": w.grams})
            change.signal(("station_feedback", station, out.ok, out.message))
            return out
        try:
            stored = await self.service.execute(op)
            out = stored if stored is not None else Outcome.good(f"order {order_id} needs no weight now", "weight")
            if stored is not None and (stored.ok or stored.code is None):  # packed, or a review: weighed
                self._parcel_taken(w.grams)
        except JournalError as e:
            # Not stored (e.g. the disk is full): nothing is shown, as for a scan that was not stored; the
            # station still awaits the weight, and scanning the order again weighs the parcel again.
            log.warning("weight not stored", extra={"fields": {"scale": self.cfg.id, "error": str(e)}})
            out = Outcome.bad("not_allowed", f"weight not stored ({e}); scan the order again to re-weigh")
        self.outcomes.append(out)
        return out


class PrinterDevice:
    def __init__(self, cfg: PrinterConfig, gw: Config, service: FloorService, registry: DeviceRegistry) -> None:
        self.cfg = cfg
        self.gw = gw
        self.name = f"printer-{cfg.id}"
        self.service = service
        self.registry = registry
        registry.add(cfg.id, "printer")
        self.printer = RawTcpPrinter(cfg.host, cfg.port)
        self._jobs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.printed: list[str] = []
        self._printed_unsaved: set[str] = set()  # printed, its record not committed yet (retried with the next)
        service.on_signal(self._on_signal)

    def _on_signal(self, signal: Any) -> None:
        if isinstance(signal, tuple) and signal[0] == "label" and signal[1] == self.cfg.station:
            self._jobs.put_nowait(signal[2])

    def reprint(self, parcel: dict[str, Any]) -> None:
        self._jobs.put_nowait(parcel)

    async def run(self) -> None:
        while True:
            parcel = await self._jobs.get()
            await self.print(parcel)

    async def print(self, parcel: dict[str, Any]) -> bool:
        label = ShippingLabel(parcel["sscc"], parcel["order_id"], self.cfg.station, int(parcel.get("items") or 0),
                              parcel.get("carton"), parcel.get("weight_g"),
                              len(self.gw.packing.company_prefix), f"{self.gw.site} / {self.gw.gateway}",
                              self.service.clock.now())
        at = self.service.at()
        sscc = str(parcel["sscc"])
        try:
            await self.printer.send(render_zpl(label))
        except PrinterError as e:
            err = str(e)
            self.registry.status(self.cfg.id, "printer", False, err)
            stored = await self._store(lambda f, c: (
                device_status(f, c, self.cfg.id, "printer", False, err, at),
                label_failed(f, c, self.cfg.id, self.cfg.station, parcel, err, at)))
            if not stored:  # the station is told all the same (with a commit, the signal would have)
                self.service.notify(("station_feedback", self.cfg.station, False,
                                     f"label for order {parcel['order_id']} not printed: {err}; press Reprint "
                                     "label once the printer is back", "printer"))
            return False
        self.registry.status(self.cfg.id, "printer", True, "printed")
        self.printed.append(sscc)
        self._printed_unsaved.add(sscc)
        done = set(self._printed_unsaved)
        if await self._store(lambda f, c: (
                device_status(f, c, self.cfg.id, "printer", True, "printed", at),
                [label_printed(f, c, self.cfg.id, s, at) for s in sorted(done)])):
            self._printed_unsaved -= done
        return True

    async def _store(self, op: Callable[[Floor, Change], object]) -> bool:
        """The printer's state with its labels; on a full disk the state is stored later (resave), the labels
        not (an unprinted one is still told at its station)."""
        gen = self.registry.devices[self.cfg.id].gen
        try:
            await self.service.execute(op)
        except JournalError:
            self.registry.saved(self.cfg.id, "status", None)
            return False
        self.registry.saved(self.cfg.id, "status", gen)
        return True
