"""A scanner's coordinator: raw scans from its driver, in arrival order, through the domain's one scan
pipeline; the answer back to the scanner (good or bad beep bytes) once the scan is stored (none if it could
not be stored)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from drivers.scanner import RawScan, make_reader
from gateway.config import ScannerConfig
from gateway.devices.registry import DeviceRegistry
from gateway.devices.status import store_status
from gateway.domain.barcode import escape_raw
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.outcome import Outcome
from gateway.domain.scanning import ScanInput, handle_scan
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.scanner")

_STOP = object()  # queued by finish(): the loop ends once what was read before it is handled
# What the scans queued at a stop may take: within the devices' share of SIGTERM's 10 s, before the lights
# go off (a slow disk made an unbounded drain take the lights' time, and 15 s in all).
DRAIN_S = 1.0


class ScannerDevice:
    def __init__(self, cfg: ScannerConfig, service: FloorService, registry: DeviceRegistry,
                 has_scale: Callable[[str], bool]) -> None:
        self.cfg = cfg
        self.name = f"scanner-{cfg.id}"
        self.service = service
        self.registry = registry
        self.has_scale = has_scale
        self.info = registry.add(cfg.id, "scanner")
        self.good = bytes.fromhex(cfg.good_feedback) if cfg.good_feedback else b""
        self.bad = bytes.fromhex(cfg.bad_feedback) if cfg.bad_feedback else b""
        self._queue: asyncio.Queue[RawScan | tuple[bool, str] | object] = asyncio.Queue()
        self.reader = make_reader(cfg, self._queue.put_nowait, lambda online, detail: self._queue.put_nowait(
            (online, detail)), clock=time.monotonic)
        self.outcomes: list[Outcome] = []  # the latest answers, for tests and the technician page
        self._current: asyncio.Future[Outcome] | None = None  # the scan being handled
        self._stopped = asyncio.Event()
        self._running = False
        self._abandoned = False  # finish() ran out of time: the loop takes no more scans
        service.on_signal(self._on_signal)

    def _on_signal(self, signal: Any) -> None:
        # A packing result decided later (the weight) is answered on the station's scanners too.
        if isinstance(signal, tuple) and signal[0] == "station_feedback" and signal[1] == self.cfg.station:
            self._beep(bool(signal[2]))

    def _beep(self, ok: bool) -> None:
        data = self.good if ok else self.bad
        if data:
            self.reader.write(data)

    async def run(self) -> None:
        self._running = True
        await self.reader.start()
        try:
            while True:
                item = await self._queue.get()
                if item is _STOP or self._abandoned:
                    return
                if isinstance(item, tuple):
                    await self._status(*item)
                elif isinstance(item, RawScan):
                    # Shielded: a scan being stored when the device is stopped (SIGHUP, SIGTERM) is still
                    # answered. Cancelled, its commit went on but its beep was lost, and the picker scanned it
                    # again.
                    self._current = asyncio.ensure_future(self.handle(item))
                    await asyncio.shield(self._current)
        finally:
            try:
                await self._drain()
            finally:
                await self.reader.stop()
                self._stopped.set()

    async def _drain(self) -> None:
        """Handle the scans already read (queued behind the one in hand), with their beeps, before the device
        stops: they were dropped, 200 of 300 in a burst at a SIGTERM, with no beep, no audit row, nothing.
        Only those queued now: a scanner that keeps sending does not hold the stop up."""
        try:
            async with asyncio.timeout(0 if self._abandoned else DRAIN_S):
                if self._current is not None and not self._current.done():
                    await asyncio.wait([self._current])
                while not self._queue.empty():
                    item = self._queue.get_nowait()
                    if isinstance(item, RawScan):  # a state change at the stop is not news (as for the broker)
                        await self.handle(item)
        except TimeoutError:
            left = 0
            while not self._queue.empty():
                left += isinstance(self._queue.get_nowait(), RawScan)
            log.error("scans read but not stored at the stop: no beep was given for them", extra={
                "fields": {"device": self.cfg.id, "scans": left}})

    async def finish(self) -> None:
        """A clean stop (SIGTERM): the scans read so far are handled in order by the loop itself, which then
        ends; for DRAIN_S at most (the loop's own drain, at its cancellation, has its own DRAIN_S)."""
        if not self._running:
            return  # never started (rebuilt by a SIGHUP just before): nothing was read
        self._queue.put_nowait(_STOP)
        try:
            async with asyncio.timeout(DRAIN_S):
                await self._stopped.wait()
        except TimeoutError:
            # Out of time (a slow disk): no more scans are handled, so none lights a module again after the
            # lights go off; those left are counted in the log when the loop ends.
            self._abandoned = True

    async def _status(self, online: bool, detail: str) -> None:
        await store_status(self.service, self.registry, self.cfg.id, "scanner", online, detail)

    async def handle(self, raw: RawScan) -> Outcome:
        scan = ScanInput(self.cfg.id, self.cfg.station, raw.text, raw.symbology, escape_raw(raw.raw), raw.too_long,
                         length=raw.length)
        at = self.service.at()
        scale = self.has_scale(self.cfg.station)

        def op(floor: Floor, change: Change) -> Outcome:
            return handle_scan(floor, change, scan, at, scale)
        stored = True
        try:
            outcome = await self.service.execute(op)
        except JournalError as e:
            # Not stored (e.g. the disk is full): no beep at all, which a person reads as "not taken, scan
            # again"; a bad beep would say the item is wrong, and a packer would put a good unit aside.
            stored = False
            outcome = Outcome.bad("not_allowed", f"not stored ({e}): scan again")
        except Exception:
            log.exception("scan failed", extra={"fields": {"device": self.cfg.id}})
            outcome = Outcome.bad("not_allowed", "internal error: scan again")
        self.registry.latencies.append(time.monotonic() - raw.t)
        self.info.scans += 1
        if not outcome.ok:
            self.info.rejects += 1
        self.info.last_scans.append({"ts": at.ts, "raw": scan.raw[:200], "ok": outcome.ok, "code": outcome.code,
                                     "message": outcome.message})
        self.outcomes.append(outcome)
        del self.outcomes[:-50]
        if stored:
            self._beep(outcome.ok)
        return outcome
