"""The alarm notifier: every alarm raised or cleared reaches people through the configured channels.

The way of an alarm: the domain commits it -> the service hands the signal out -> this part records one
pending delivery per channel in the journal -> one worker per channel sends its deliveries in order,
retrying with backoff -> the outcome is committed. Because the delivery is journalled before anything is
sent and settled after, an alarm raised while the uplink is down goes out later, once, even across a
restart; a crash between a send and its commit resends it, so receivers get an `Idempotency-Key` header
(webhook) or a stable Message-ID (mail) to drop such a copy.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from gateway.alarms import deliveries as dl
from gateway.alarms.channel import (
    Backoff,
    Channel,
    DeliveryError,
    Notice,
    PermanentError,
    RetryPolicy,
    TransientError,
)
from gateway.alarms.deliveries import CLEARED, RAISED, AlarmEvent, Delivery
from gateway.alarms.mail import SmtpChannel, load_password
from gateway.alarms.webhook import WebhookChannel
from gateway.clock import Clock, rfc3339
from gateway.config import Config
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.domain.model import Alarm
from gateway.journal import JournalError
from gateway.service import FloorService

log = logging.getLogger("floorgate.alarms")
T = TypeVar("T")

RETENTION = timedelta(days=7)


def build_channels(cfg: Config, clock: Clock, *, smtp_timeout_s: float = 30.0,
                   tls_context: ssl.SSLContext | None = None) -> list[Channel]:
    """The channels the config asks for. A half-configured SMTP section is reported, not guessed at."""
    channels: list[Channel] = []
    seen: set[str] = set()
    for i, w in enumerate(cfg.alarms.webhooks):
        ch = WebhookChannel(w, i, verify=tls_context)
        if ch.id in seen:
            log.warning("alarm webhook listed twice; it gets each alarm once", extra={"fields": {"channel": ch.label}})
            continue
        seen.add(ch.id)
        channels.append(ch)
    smtp = cfg.alarms.smtp
    if smtp.host:  # with `to`: the config refuses one without the other (gateway/config.py SmtpConfig)
        mail = SmtpChannel(smtp, clock, password=load_password(smtp), timeout_s=smtp_timeout_s,
                           tls_context=tls_context)
        if mail.sends_password_in_clear:
            log.warning("alarms.smtp logs in without TLS: the password crosses the network in clear; set "
                        "starttls = true or use port 465", extra={"fields": {"channel": mail.label}})
        channels.append(mail)
    return channels


@dataclass(slots=True)
class _Worker:
    channel: Channel
    wake: asyncio.Event
    backoff: Backoff
    failing: bool = False


class AlarmNotifier:
    """A part (`name`, `async run()`, `async shutdown()`): see the module docstring."""

    name = "alarm-notifier"

    def __init__(self, cfg: Config, service: FloorService, clock: Clock, *,
                 channels: Sequence[Channel] | None = None, retry: RetryPolicy | None = None,
                 retention: timedelta = RETENTION, prune_every_s: float = 3600.0, smtp_timeout_s: float = 30.0,
                 tls_context: ssl.SSLContext | None = None, rng: random.Random | None = None,
                 shutdown_wait_s: float = 2.5) -> None:
        self.cfg = cfg
        self.service = service
        self.clock = clock
        self.channels: list[Channel] = (list(channels) if channels is not None else
                                        build_channels(cfg, clock, smtp_timeout_s=smtp_timeout_s,
                                                       tls_context=tls_context))
        self.retry = retry or RetryPolicy()
        self.retention = retention
        self.prune_every_s = prune_every_s
        self.shutdown_wait_s = shutdown_wait_s
        self._rng = rng or random.Random()
        self._workers = [_Worker(ch, asyncio.Event(), Backoff(self.retry, self._rng)) for ch in self.channels]
        self._events: list[AlarmEvent] = []
        self._have_events = asyncio.Event()
        self._uncommitted: set[str] = set()  # recorded in memory, commit under way: not to be sent yet
        self._in_flight: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._closed = False
        self._ready = asyncio.Event()
        # Registered now, not in run(): an alarm committed before the part starts is still heard.
        service.on_signal(self._on_signal)

    # -- hearing alarms ----------------------------------------------------------------------------

    def _on_signal(self, signal: Any) -> None:
        if self._closed or not isinstance(signal, tuple) or len(signal) < 2:
            return
        tag, alarm = signal[0], signal[1]
        if tag not in ("alarm", "alarm_cleared") or not isinstance(alarm, Alarm):
            return
        if tag == "alarm":
            ev = AlarmEvent(RAISED, alarm, alarm.raised_at, alarm.message)
        else:
            # A clear signal may carry its own message as a third item; else the domain's default wording.
            given = signal[2] if len(signal) > 2 and isinstance(signal[2], str) and signal[2] else ""
            ev = AlarmEvent(CLEARED, alarm, rfc3339(self.clock.now()), given or f"cleared: {alarm.message}")
        self._events.append(ev)
        self._have_events.set()

    # -- running -----------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._reconcile()
            self._ready.set()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._record_loop(), name="alarm-notifier-record")
                tg.create_task(self._prune_loop(), name="alarm-notifier-prune")
                for w in self._workers:
                    tg.create_task(self._channel_loop(w), name=f"alarm-notifier-{w.channel.id}")
        finally:
            self._closed = True
            for ch in self.channels:
                try:
                    await ch.aclose()
                except Exception:
                    log.exception("alarm channel did not close cleanly", extra={"fields": {"channel": ch.label}})

    async def wait_ready(self) -> None:
        """Returns once start-up reconciliation is committed (for tests and the composition root)."""
        await self._ready.wait()

    async def shutdown(self) -> None:
        """Start no new send and give the ones under way a moment to finish, so a stop rarely cuts a send
        in half (which would send it again after the restart). Returns within `shutdown_wait_s`, inside
        the composition root's own limit for a part's shutdown."""
        self._stopping = True
        for w in self._workers:
            w.wake.set()
        try:
            async with asyncio.timeout(self.shutdown_wait_s):
                await self._idle.wait()
        except TimeoutError:
            log.info("alarm sends still under way at shutdown; they go out again after the restart",
                     extra={"fields": {"deliveries": sorted(self._in_flight)}})

    def deliveries(self) -> list[Delivery]:
        """Every delivery in the journal, oldest first: for status pages and `doctor`."""
        return dl.deliveries(self.service.floor)

    async def prune(self) -> tuple[int, int]:
        """Delete settled deliveries past the retention and give up pending ones past it."""
        now = self.clock.now()

        def op(f: Floor, c: Change) -> tuple[int, int]:
            # The live set: a send under way is never settled behind its worker's back.
            return dl.prune(f, c, now, self.retention, self._in_flight, rfc3339(now))

        deleted, expired = await self._commit(op, "prune")
        if deleted or expired:
            log.info("alarm deliveries pruned", extra={"fields": {"deleted": deleted, "given_up": expired}})
        return deleted, expired

    # -- internals ---------------------------------------------------------------------------------

    @property
    def _channel_ids(self) -> list[str]:
        return [ch.id for ch in self.channels]

    async def _reconcile(self) -> None:
        now = rfc3339(self.clock.now())
        ids = self._channel_ids
        new = await self._record(lambda f, c: dl.reconcile(f, c, ids, now), "reconcile")
        if new:
            log.info("alarm deliveries recorded at start-up for alarms not yet told",
                     extra={"fields": {"deliveries": len(new)}})
        pending = [d for d in self.deliveries() if d.status == dl.PENDING]
        if pending:
            log.info("resuming pending alarm deliveries", extra={"fields": {"pending": len(pending)}})

    async def _record(self, fn: Callable[[Floor, Change], list[str]], what: str) -> list[str]:
        made: list[str] = []

        def op(f: Floor, c: Change) -> list[str]:
            ids = fn(f, c)
            made.extend(ids)
            self._uncommitted.update(ids)
            return ids

        try:
            return await self._commit(op, what)
        finally:
            self._uncommitted.difference_update(made)
            for w in self._workers:
                w.wake.set()

    async def _record_loop(self) -> None:
        while True:
            await self._have_events.wait()
            self._have_events.clear()
            batch, self._events = self._events, []
            now = rfc3339(self.clock.now())
            ids = self._channel_ids
            await self._record(functools.partial(dl.record_events, events=batch, channels=ids, now=now), "record")

    async def _commit(self, op: Callable[[Floor, Change], T], what: str) -> T:
        """Commit through the service, retrying while the journal cannot take it: an outcome once reached
        is never dropped, and a send is never repeated because its bookkeeping failed."""
        backoff = Backoff(self.retry, self._rng)
        while True:
            try:
                return await self.service.execute(op)
            except JournalError as e:
                if backoff.failures == 0:
                    log.warning("cannot journal alarm deliveries; retrying",
                                extra={"fields": {"step": what, "error": str(e)}})
                await asyncio.sleep(backoff.next())

    def _next_pending(self, channel_id: str) -> Delivery | None:
        best: Delivery | None = None
        for doc in self.service.floor.extra.get(dl.KIND, {}).values():
            if doc.get("channel") != channel_id or doc.get("status") != dl.PENDING:
                continue
            if doc.get("id") in self._uncommitted:
                continue
            try:
                d = Delivery.from_doc(doc)
            except (KeyError, TypeError, ValueError):
                continue
            if best is None or (d.n, d.id) < (best.n, best.id):
                best = d
        return best

    async def _channel_loop(self, w: _Worker) -> None:
        ch = w.channel
        while True:
            d = None if self._stopping else self._next_pending(ch.id)
            if d is None:
                w.wake.clear()
                await w.wake.wait()
                continue
            self._in_flight.add(d.id)
            self._idle.clear()
            delay: float | None = None
            try:
                delay = await self._attempt(w, d)
            finally:
                self._in_flight.discard(d.id)
                if not self._in_flight:
                    self._idle.set()
            if delay is not None:
                await asyncio.sleep(delay)

    async def _attempt(self, w: _Worker, d: Delivery) -> float | None:
        """One send and its committed outcome; returns how long to wait before the next try, if any."""
        ch = w.channel
        fields: dict[str, Any] = {"channel": ch.label, "alarm_id": d.alarm_id, "state": d.state,
                                  "delivery": d.id}
        try:
            await ch.send(Notice.of(d, self.cfg.site, self.cfg.gateway))
        except PermanentError as e:
            reason = e.reason
            log.error("alarm delivery failed for good", extra={"fields": {**fields, "reason": reason}})
            await self._commit(lambda f, c: dl.mark_failed(f, c, d.id, reason, rfc3339(self.clock.now())),
                               "failed")
            return None
        except Exception as e:
            if isinstance(e, TransientError):
                reason, hint = e.reason, e.retry_after_s
            elif isinstance(e, DeliveryError):
                reason, hint = e.reason, None
            else:  # a bug in a channel must not stop the others; the delivery stays pending
                log.exception("alarm channel raised unexpectedly", extra={"fields": fields})
                reason, hint = f"internal error: {type(e).__name__}", None
            delay = w.backoff.next(hint)
            if not w.failing:
                w.failing = True
                log.warning("alarm channel unreachable; retrying with backoff",
                            extra={"fields": {**fields, "reason": reason}})
            else:
                log.debug("alarm delivery retry failed",
                          extra={"fields": {**fields, "reason": reason, "retry_in_s": round(delay, 3)}})
            await self._commit(lambda f, c: dl.note_attempt(f, c, d.id, reason), "attempt")
            return delay
        if w.failing:
            log.info("alarm channel reachable again", extra={"fields": {"channel": ch.label,
                                                                        "failed_attempts": w.backoff.failures}})
        w.failing = False
        w.backoff.reset()
        await self._commit(lambda f, c: dl.mark_delivered(f, c, d.id, rfc3339(self.clock.now())), "delivered")
        log.info("alarm delivered", extra={"fields": fields})
        return None

    async def _prune_loop(self) -> None:
        while True:
            await self.prune()
            await asyncio.sleep(self.prune_every_s)
