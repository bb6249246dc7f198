"""The link to the hub: one MQTT client carrying the outbox, commands and results, status (with its Last
Will), snapshots and telemetry. A part of the app (`run()` until cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from gateway import __version__
from gateway.bulk import BulkApplier
from gateway.clock import Clock, parse_rfc3339, rfc3339
from gateway.config import Config, secret_from_file
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.devices import broker_status
from gateway.domain.model import FINAL_STATES
from gateway.journal import JournalError, StoredEvent
from gateway.jsontext import dumps, loads_strict
from gateway.service import FloorService
from gateway.sync.intake import CommandIntake
from gateway.sync.mqtt import AsyncMqtt, Message, MqttSettings, TooLarge
from gateway.sync.publisher import OutboxPublisher

log = logging.getLogger("floorgate.sync")

SAVE_PROGRESS_S = 1.0
STATUS_AGAIN_S = 2.0  # after a (re)connect, the status is published once more (HubLink.__init__)
BROKER_GRACE_S = 30.0  # a start without a broker this long: the broker is reported offline
BROKER_RETRY_S = 5.0
BROKER_OFFLINE_GRACE_S = 10.0  # a broker back within this long is no outage: no offline and online events
TWIN_CLEAR_S = 600.0  # the twin gateway alarm clears once no other journal has said "online" this long


def settings_from_config(cfg: Config) -> MqttSettings:
    m = cfg.mqtt
    return MqttSettings(
        host=m.host, port=m.port, client_id=cfg.client_id, username=m.username,
        password=secret_from_file(m.password_file), tls=m.tls, ca_file=m.ca_file, cert_file=m.cert_file,
        key_file=m.key_file, keepalive_s=m.keepalive_s, inflight=m.inflight, reconnect_max_s=m.reconnect_max_s,
        clean_session=False, manual_ack=True, max_payload_bytes=m.max_payload_bytes)


class HubLink:
    name = "hub-link"

    def __init__(self, cfg: Config, service: FloorService, clock: Clock) -> None:
        self.cfg = cfg
        self.service = service
        self.journal = service.journal
        self.clock = clock
        self.prefix = cfg.topic_prefix
        offline = dumps({"state": "offline", "site": cfg.site, "gateway": cfg.gateway,
                         "journal": self.journal.journal_id})
        # Its own status too: a status of another journal, live, is a twin gateway (`_status_seen`). QoS 1, so
        # that it waits in the session: twins share one (one client id), and each holds it only in turns.
        self.status_topic = f"{self.prefix}/status"
        self.mqtt = AsyncMqtt(settings_from_config(cfg), will=(self.status_topic, offline.encode(), 1, True),
                              subscriptions=[(f"{self.prefix}/cmd/#", 1), (self.status_topic, 1)], name="hub")
        self.publisher = OutboxPublisher(self.journal, self.mqtt, self.prefix, cfg.mqtt.inflight)
        self.bulk = BulkApplier(service, clock, self._publish_result)
        self.intake = CommandIntake(service, self.mqtt, self.publisher, self.bulk, self.prefix,
                                    cfg.mqtt.max_payload_bytes, clock, self.publish_snapshot)
        self.mqtt.on_message = self.intake.on_message
        self.intake.other_topics[self.status_topic] = self._status_seen
        self.publisher.on_held_back = self._held_back
        self.mqtt.on_too_large.append(self._too_large)
        self.mqtt.on_flapping.append(self._flapping)
        # a twin alarm stored before a restart clears like one raised now, once no twin is seen for TWIN_CLEAR_S
        self._twin_seen_at: float | None = clock.monotonic() if "twin_gateway" in service.floor.alarms else None
        self._started_at = clock.now() - timedelta(seconds=5)
        # Alarms of the link stored before a restart end as they would have in the run before: flapping with the
        # next connection that lasts, and the learned message limit with the start (it is learned afresh).
        self.mqtt.flapping = "broker_flapping" in service.floor.alarms
        self._limit_alarm_left = "mqtt_message_limit" in service.floor.alarms
        self._alarm_tasks: set[asyncio.Task[None]] = set()
        self.mqtt.on_connect.append(lambda present: self.publish_status())
        # ... and again a moment later: on a reconnect the client sends the publishes the broker never
        # acknowledged again (older statuses among them) after this one, and the retained status went back
        # to an older last_seq (a broker stalled a minute: 1282 retained while the journal was at 1304).
        self._status_again_at: float | None = None
        self.mqtt.on_connect.append(self._status_again)
        self._connected_since: float | None = None  # the hub link's current connection, on the clock
        self.mqtt.on_disconnect.append(self._disconnected)
        self._broker_changed = asyncio.Event()
        self._stopping = False  # our own disconnect at a clean stop is no broker outage
        self.mqtt.on_connect.append(lambda present: self._broker_changed.set())
        self.mqtt.on_disconnect.append(self._broker_changed.set)
        self._broker_retell = False  # the floor was rebuilt: its broker state is gone, tell it again
        service.on_signal(self._on_signal)
        self.telemetry_sources: list[Callable[[], dict[str, Any]]] = []
        self._status_seq = -1

    def _status_again(self, present: bool) -> None:
        self._status_again_at = self.clock.monotonic() + STATUS_AGAIN_S
        self._connected_since = self.clock.monotonic()
        if self._limit_alarm_left:
            self._limit_alarm_left = False
            self._clear("mqtt_message_limit", "the gateway restarted: its message limit is mqtt.max_payload_bytes "
                                              "again (lowered again if the broker closes the link after a message)")

    def _disconnected(self) -> None:
        self._connected_since = None

    def _on_signal(self, signal: Any) -> None:
        if signal == ("floor_reloaded",):  # device states are not in the journal (gateway/devices/status.py)
            self._broker_retell = True
            self._broker_changed.set()

    def _publish_result(self, result: dict[str, Any]) -> None:
        self.intake.publish_result(result)

    # -- what the broker link itself goes through ------------------------------------------------------

    def _status_seen(self, msg: Message) -> None:
        """A live `online` status of another journal under this gateway's topics: a second gateway with this
        site and gateway id on the broker. The two took the one client id from each other ten times a second,
        both journals filled with broker events, and the hub's commands went to whichever was connected (one
        without master data refused them); nothing said why. A retained status is the last one stored, maybe
        this gateway's own before a restore: only a live one counts."""
        if msg.retain:
            return
        try:
            status = loads_strict(msg.payload)
        except ValueError:
            return
        if not isinstance(status, dict) or status.get("state") != "online":
            return
        other = status.get("journal")
        if not isinstance(other, str) or other == self.journal.journal_id:
            return
        try:
            sent = parse_rfc3339(str(status.get("ts")))
        except ValueError:
            return
        if sent < self._started_at:
            return  # from before this process (its own, queued in the session before a restore changed the id)
        first = self._twin_seen_at is None
        self._twin_seen_at = self.clock.monotonic()
        if first:
            log.error("another gateway publishes as this one", extra={"fields": {"journal": other}})
        self._alarm("twin_gateway", "critical",
                    f"another gateway (journal {other}) is connected to the broker as {self.cfg.site}/"
                    f"{self.cfg.gateway}: the two take the connection from each other and the hub's commands go "
                    "to either. Stop one, or give it its own site and gateway in its config")

    def _flapping(self, short_run: int) -> None:
        if short_run == 0:
            self._clear("broker_flapping", "connections to the broker last again")
            return
        self._alarm("broker_flapping", "warning",
                    "the broker closes this gateway's connection right after each connect (reconnecting more "
                    f"slowly): another client with client id {self.mqtt.settings.client_id!r} (a second gateway "
                    "with this site and gateway?), or a message over the broker's limit")

    def _too_large(self, size: int, limit: int, dropped: list[int]) -> None:
        self.intake.dropped(dropped)
        self._alarm("mqtt_message_limit", "critical",
                    f"the broker closed the connection after a message of {size} bytes: its message limit is below "
                    f"mqtt.max_payload_bytes ({self.cfg.mqtt.max_payload_bytes}). Nothing over {limit} bytes is "
                    "sent until the gateway restarts: set mqtt.max_payload_bytes to the broker's limit, or raise "
                    "the broker's")

    def _held_back(self, ev: StoredEvent, e: TooLarge) -> None:
        self._alarm("event_too_large", "critical",
                    f"events over the broker's message limit ({e.limit} bytes) are held back in the journal, the "
                    f"latest seq {ev.seq} ({ev.type}, {e.size} bytes): raise the broker's limit and "
                    "mqtt.max_payload_bytes, restart, and the hub's sync.replay of the gap brings them")

    def _alarm(self, alarm_id: str, severity: str, message: str) -> None:
        """Raise an alarm from a callback of the link (not a coroutine): in a task of its own, kept."""
        self._in_task(lambda f, c: raise_alarm(f, c, alarm_id, alarm_id, severity, message, self.clock.now()))

    def _clear(self, alarm_id: str, message: str) -> None:
        if alarm_id in self.service.floor.alarms:
            self._in_task(lambda f, c: clear_alarm(f, c, alarm_id, message))

    def _in_task(self, op: Callable[[Any, Any], Any]) -> None:
        async def run() -> None:
            try:
                await self.service.execute(op)
            except JournalError as e:
                log.warning("sync alarm not stored", extra={"fields": {"error": str(e)}})
        task = asyncio.get_running_loop().create_task(run(), name="sync-alarm")
        self._alarm_tasks.add(task)
        task.add_done_callback(self._alarm_tasks.discard)

    # -- status, snapshot, telemetry -------------------------------------------------------------------

    def publish_status(self) -> None:
        j = self.journal
        status = {"state": "online", "site": self.cfg.site, "gateway": self.cfg.gateway, "version": __version__,
                  "journal": j.journal_id, "ts": rfc3339(self.clock.now()), "last_seq": j.last_seq}
        self.mqtt.publish(f"{self.prefix}/status", dumps(status), qos=1, retain=True)
        self._status_seq = j.last_seq

    async def publish_snapshot(self) -> None:
        """The snapshot, whole or not at all: SPEC has no parts for it, and a hub reading a part as the whole
        would take the orders left out for gone. Over the broker's limit it is not sent, and an alarm says so."""
        await self.journal.barrier()
        floor = self.service.floor
        orders = [{"order_id": o.order_id, "state": o.state, "updated_seq": o.updated_seq}
                  for o in floor.orders.values() if o.state not in FINAL_STATES]
        snap = {"ts": rfc3339(self.clock.now()), "journal": self.journal.journal_id,
                "last_seq": self.journal.last_seq, "orders": orders}
        try:
            self.mqtt.publish(f"{self.prefix}/snapshot", dumps(snap), qos=1)
        except TooLarge as e:
            log.error("snapshot not sent: over the broker's message limit", extra={"fields": {
                "orders": len(orders), "bytes": e.size, "limit": e.limit}})
            self._alarm("snapshot_too_large", "warning",
                        f"the snapshot of {len(orders)} open orders ({e.size} bytes) is over the broker's message "
                        f"limit ({e.limit} bytes) and is not sent: raise the broker's limit and "
                        "mqtt.max_payload_bytes")
            return
        self._clear("snapshot_too_large", "the snapshot fits the broker's message limit again")

    def telemetry(self) -> dict[str, Any]:
        devices: list[dict[str, Any]] = []
        pickers: list[dict[str, Any]] = []
        for source in self.telemetry_sources:
            part = source()
            devices.extend(part.get("devices", []))
            pickers.extend(part.get("pickers", []))
        return {"ts": rfc3339(self.clock.now()), "devices": devices, "pickers": pickers,
                "sync": {"pending": self.publisher.pending, "acked_seq": self.publisher.hub_acked}}

    async def _periodic(self) -> None:
        clock = self.clock
        snap_every = self.cfg.sync.snapshot_interval_s
        tele_every = self.cfg.sync.telemetry_interval_s
        next_snap = clock.monotonic() + snap_every
        next_tele = clock.monotonic() + tele_every
        bulk_failing = False
        while True:
            await asyncio.sleep(SAVE_PROGRESS_S)
            await self.publisher.save_progress()
            try:
                since = self._connected_since
                await self.bulk.check_waiting(clock.monotonic() - since if since is not None else 0.0)
            except Exception as e:  # a full disk (or a defect): the sets wait on, and are checked again in a second;
                # never a reason to stop the hub link, which this loop is part of
                if not bulk_failing:
                    log.warning("waiting bulk sets not checked; trying again", extra={"fields": {"error": str(e)}},
                                exc_info=not isinstance(e, JournalError))
                bulk_failing = True
            else:
                bulk_failing = False
            if not self.mqtt.connected.is_set():
                continue
            now = clock.monotonic()
            if self._status_again_at is not None and now >= self._status_again_at:
                self._status_again_at = None
                self.publish_status()
            if self._twin_seen_at is not None and now - self._twin_seen_at >= TWIN_CLEAR_S:
                self._twin_seen_at = None
                self._clear("twin_gateway", "no other gateway has said it is this one for "
                                            f"{TWIN_CLEAR_S / 60:.0f} minutes")
            if now >= next_tele:
                next_tele = now + tele_every
                try:
                    self.mqtt.publish(f"{self.prefix}/telemetry", dumps(self.telemetry()), qos=0)
                except TooLarge as e:  # QoS 0, and may be dropped (SPEC): said in the log only
                    log.warning("telemetry not sent: over the broker's message limit",
                                extra={"fields": {"bytes": e.size, "limit": e.limit}})
                if self.journal.last_seq != self._status_seq:
                    self.publish_status()  # a fresh last_seq lets the hub see a gap at the tail
            if now >= next_snap:
                next_snap = now + snap_every
                await self.publish_snapshot()

    async def _watch_broker(self) -> None:
        """The broker as a device of the floor (device.online / device.offline, kind `broker`, and the offline
        alarm): a broker lost after the start-up check raised nothing at all, and the check's own alarm stayed
        up a day after the broker came back. Unknown until the first connection, or offline after
        BROKER_GRACE_S without one, so that an ordinary start says nothing."""
        where = f"{self.cfg.mqtt.host}:{self.cfg.mqtt.port}"
        told: bool | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BROKER_GRACE_S):
                await self.mqtt.connected.wait()
        while True:
            self._broker_changed.clear()
            if self._broker_retell:
                self._broker_retell, told = False, None
            online = self.mqtt.connected.is_set()
            at = self.service.at()
            if not online and told:
                # A broker back within the grace is no outage: a link that the broker closed again and again
                # (a twin gateway, a message over its limit) wrote an offline and an online event each time.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BROKER_OFFLINE_GRACE_S):
                        await self.mqtt.connected.wait()
                online = self.mqtt.connected.is_set()
                if online:
                    await asyncio.sleep(0)  # let the reconnect's own signal land, then look again
                    continue
            if online != told and not self._stopping:
                try:
                    await self.service.execute(partial(
                        broker_status, online=online, at=at,
                        detail=f"connected to {where}" if online
                        else f"connection to {where} lost" if told else f"cannot reach {where}"))
                except JournalError as e:
                    log.warning("broker state not stored; trying again", extra={"fields": {"error": str(e)}})
                    await asyncio.sleep(BROKER_RETRY_S)
                    continue
                told = online
            await self._broker_changed.wait()

    # -- life cycle -------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.publisher.start()
        await self.bulk.start()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.mqtt.run(), name="mqtt")
                tg.create_task(self.publisher.run(), name="outbox-publisher")
                tg.create_task(self.intake.run(), name="command-intake")
                tg.create_task(self.bulk.run(), name="bulk-applier")
                tg.create_task(self._periodic(), name="sync-periodic")
                tg.create_task(self._watch_broker(), name="broker-watch")
        finally:
            await self.bulk.close(kill=True)  # the worker process, if one is running: stopping, not waited for

    async def shutdown(self) -> None:
        """On a clean stop, before the tasks are cancelled: say `offline` ourselves (retained, since a clean
        DISCONNECT suppresses the Last Will) and disconnect."""
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.publisher.save_progress()
        if self.mqtt.connected.is_set():
            offline = {"state": "offline", "site": self.cfg.site, "gateway": self.cfg.gateway,
                       "journal": self.journal.journal_id}
            self.mqtt.publish(f"{self.prefix}/status", dumps(offline), qos=1, retain=True)
            await asyncio.sleep(0.05)
            await self.mqtt.disconnect()
