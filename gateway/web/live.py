"""What keeps the pages live: every committed floor signal wakes the open event streams (server-sent
events), which rebuild their view and send it when it changed; a slow refresh catches what has no signal
(device health, the hub's acks). Also the backlog trend and the packing stations' last answers, which the
pages show but the floor does not keep."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from gateway.clock import Clock, rfc3339
from gateway.domain.model import FINAL_STATES
from gateway.jsontext import dumps
from gateway.service import FloorService
from gateway.web.sessions import SessionStore

TREND_POINTS = 240
TREND_EVERY_S = 30.0
TREND_MIN_GAP_S = 2.0  # a change adds a point, but not more often than this
REFRESH_S = 5.0
HEARTBEAT_S = 15.0
COALESCE_S = 0.2


class Live:
    def __init__(self, service: FloorService, clock: Clock, sessions: SessionStore) -> None:
        self.service = service
        self.clock = clock
        self.sessions = sessions
        self.version = 0
        self.closing = False
        self._changed = asyncio.Event()
        self.trend: deque[tuple[str, int]] = deque(maxlen=TREND_POINTS)
        self._checked_mono = -1e9
        self.station_results: dict[str, dict[str, Any]] = {}
        self.parcels: dict[str, dict[str, Any]] = {}
        self.streams = 0
        self._cache: dict[str, tuple[int, float, dict[str, Any]]] = {}
        service.on_signal(self.on_signal)

    def on_signal(self, signal: Any) -> None:
        if isinstance(signal, tuple) and signal:
            kind = signal[0]
            if kind == "logout" and len(signal) > 1:
                self.sessions.drop_device(str(signal[1]))
            elif kind == "station_feedback" and len(signal) > 3:
                self.station_results[str(signal[1])] = {
                    "ok": bool(signal[2]), "message": str(signal[3]), "ts": rfc3339(self.clock.now()),
                    "source": str(signal[4]) if len(signal) > 4 else "scale"}
            elif kind == "label" and len(signal) > 2 and isinstance(signal[2], dict):
                self.parcels[str(signal[1])] = dict(signal[2])
        self.sample(force=False)
        self.bump()

    def bump(self) -> None:
        self.version += 1
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    async def wait(self, seen: int, timeout: float) -> None:
        if self.version != seen or self.closing:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def close(self) -> None:
        """End every open stream (the server is stopping)."""
        self.closing = True
        self.bump()

    # -- backlog trend ------------------------------------------------------------------------------

    def open_orders(self) -> int:
        return sum(1 for o in self.service.floor.orders.values() if o.state not in FINAL_STATES)

    def sample(self, force: bool = True) -> None:
        if not force:
            mono = self.clock.monotonic()
            if mono - self._checked_mono < TREND_MIN_GAP_S:
                return
            self._checked_mono = mono
        n = self.open_orders()
        if not force and self.trend and self.trend[-1][1] == n:
            return
        self.trend.append((rfc3339(self.clock.now()), n))

    async def run_sampler(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(TREND_EVERY_S)

    # -- streams ------------------------------------------------------------------------------------

    def cached(self, key: str, build: Callable[[], dict[str, Any]], max_age_s: float = 1.0) -> dict[str, Any]:
        """One build per floor change (and at most `max_age_s` old) shared by every stream of the same view, so
        ten open dashboards cost one snapshot, not ten."""
        now = self.clock.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self.version and now - hit[1] < max_age_s:
            return hit[2]
        value = build()
        self._cache[key] = (self.version, now, value)
        return value

    def stream(self, build: Callable[[], dict[str, Any] | None]) -> StreamingResponse:
        """A server-sent event stream of `build()`; `build` returns None when the session has ended."""
        return StreamingResponse(self._events(build), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _events(self, build: Callable[[], dict[str, Any] | None]) -> AsyncIterator[str]:
        self.streams += 1
        try:
            yield "retry: 2000\n\n"
            last_text = ""
            last_sent = self.clock.monotonic()
            while not self.closing:
                seen = self.version
                data = build()
                if data is None:
                    yield "event: logout\ndata: {}\n\n"
                    return
                text = dumps(data)
                now = self.clock.monotonic()
                if text != last_text:
                    last_text, last_sent = text, now
                    yield f"event: snapshot\ndata: {text}\n\n"
                elif now - last_sent >= HEARTBEAT_S:
                    last_sent = now
                    yield ": keepalive\n\n"
                await self.wait(seen, REFRESH_S)
                await asyncio.sleep(COALESCE_S)
        finally:
            self.streams -= 1
