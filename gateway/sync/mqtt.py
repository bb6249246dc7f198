"""paho-mqtt 2.x driven by the asyncio loop (the shape of aiomqtt's bridge, without its message iterator).

paho's socket is registered with the loop, so reads, writes and callbacks all run on the loop's thread:
publishing from that thread is an order of magnitude faster than from a second thread, and no lock is
needed around our state. Only the blocking TCP/TLS connect runs in an executor; its socket callbacks are
handed back to the loop.

Reconnects are ours, not paho's: capped exponential backoff (default cap 1 s), so the client is back
within a second of the broker returning. A connection the broker closes again within SHORT_S of its CONNACK,
time after time, backs off further (to FLAP_MAX_S) and is reported (`on_flapping`): a second client with this
client id (a twin gateway with the same site and gateway) took the session from this one and back, about ten
times a second each, and both journals filled with broker offline/online events.

Nothing over `max_payload_bytes` (the broker's message limit, SPEC's `mqtt.max_payload_bytes`) is published:
`publish` raises `TooLarge` and the caller decides (an event is held back, a result shortened, a snapshot
left out). A broker that closes the connection just after a large message came, before its PUBACK, is taken
to have a lower limit than configured (MQTT 3.1.1 does not tell it): the limit is halved below that message,
which paho would otherwise send again at every reconnect (the link went down twice a second, for good), and
`on_too_large` is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from gateway.logs import redact

log = logging.getLogger("floorgate.mqtt")

SHORT_S = 2.0  # a connection closed by the broker sooner than this after its CONNACK counts as short ...
FLAP_AFTER = 5  # ... and this many in a row, each followed by a reconnect the broker took at once (a broker
# that went down refuses the next connect, which ends the run): it keeps closing them (a twin, a bad message)
FLAP_MAX_S = 30.0  # the reconnect backoff while the connections keep being short
LEARN_MIN = 64 * 1024  # a message this large, unacknowledged when the broker closed the connection, ...
LEARN_WITHIN_S = 2.0  # ... and sent this shortly before: taken as over the broker's limit


class TooLarge(ValueError):
    """A message over the broker's limit: publishing it would only get the connection closed."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"{topic}: {size} bytes, over the broker's message limit of {limit} bytes")
        self.topic, self.size, self.limit = topic, size, limit


@dataclass(slots=True, frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = 30
    inflight: int = 200
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 1.0
    clean_session: bool = False
    manual_ack: bool = False
    connect_timeout_s: float = 5.0
    max_payload_bytes: int = 16 * 1024 * 1024


@dataclass(slots=True, frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    connection: int  # which connection delivered it: an ack on a later connection would ack the wrong message


class AsyncMqtt:
    def __init__(self, settings: MqttSettings, *, will: tuple[str, bytes, int, bool] | None = None,
                 subscriptions: list[tuple[str, int]] | None = None, name: str = "mqtt") -> None:
        self.settings = settings
        self.name = name
        self.subscriptions = list(subscriptions or [])
        self.connected = asyncio.Event()
        self.connection = 0  # increments on every successful connect
        self.session_present = False
        self.on_message: Callable[[Message], None] = lambda m: None
        self.on_puback: Callable[[int], None] = lambda mid: None
        self.on_connect: list[Callable[[bool], None]] = []
        self.on_disconnect: list[Callable[[], None]] = []
        self.on_too_large: list[Callable[[int, int, list[int]], None]] = []  # (size, new limit, mids dropped)
        self.on_flapping: list[Callable[[int], None]] = []  # short connections in a row; 0: a lasting one again
        self.last_error = ""
        self.connects = 0
        self.max_payload = settings.max_payload_bytes
        self.short_run = 0  # connections in a row the broker closed within SHORT_S
        self.flapping = False  # on_flapping has been told of a run, and not yet of its end
        self._connected_at = 0.0
        self._big: tuple[float, int, int] | None = None  # (when, size, mid) of the largest unacked message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._disconnected = asyncio.Event()
        self._sock: socket.socket | None = None
        self._loop_thread: int | None = None
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                        clean_session=settings.clean_session, protocol=paho.MQTTv311,
                        manual_ack=settings.manual_ack)
        c.max_inflight_messages_set(settings.inflight)
        c.max_queued_messages_set(0)
        c.connect_timeout = settings.connect_timeout_s
        if settings.username:
            redact(settings.password)
            c.username_pw_set(settings.username, settings.password or None)
        if settings.tls:
            ctx = ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.cert_file:
                ctx.load_cert_chain(settings.cert_file, settings.key_file or None)
            c.tls_set_context(ctx)
        if will is not None:
            c.will_set(will[0], will[1], qos=will[2], retain=will[3])
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_socket_register_write
        c.on_socket_unregister_write = self._on_socket_unregister_write
        self.client = c

    # -- the loop bridge -----------------------------------------------------------------------------

    def _in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._register_reader, sock)

    def _register_reader(self, sock: socket.socket) -> None:
        assert self._loop is not None
        self._sock = sock
        self._loop.add_reader(sock, self._read)

    def _read(self) -> None:
        self.client.loop_read()

    def _write(self) -> None:
        self.client.loop_write()

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._unregister, sock)

    def _unregister(self, sock: socket.socket) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)
        if self._sock is sock:
            self._sock = None

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._add_writer, sock)

    def _add_writer(self, sock: socket.socket) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.add_writer(sock, self._write)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._remove_writer, sock)

    def _remove_writer(self, sock: socket.socket) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)

    # -- callbacks (on the loop's thread) ---------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            msg = f"broker refused the connection: {reason}"
            if msg != self.last_error:
                log.error(msg, extra={"fields": {"client": self.name, "host": self.settings.host}})
            self.last_error = msg
            return
        self.connection += 1
        self.connects += 1
        self.session_present = bool(getattr(flags, "session_present", False))
        self.last_error = ""
        for topic, qos in self.subscriptions:  # always: a restarted broker may have lost the session
            client.subscribe(topic, qos)
        self._disconnected.clear()
        self.connected.set()
        # paho sends what it holds again right after this: the largest of those is watched as a fresh publish
        out = getattr(client, "_out_messages", None) or {}
        for mid, m in list(out.items()):
            size = len(getattr(m, "payload", b""))
            if m.qos > 0 and size >= LEARN_MIN and (self._big is None or size > self._big[1]):
                self._big = (self._now(), size, int(mid))
        log.info("connected to broker", extra={"fields": {
            "client": self.name, "host": self.settings.host, "port": self.settings.port,
            "session_present": self.session_present}})
        for fn in self.on_connect:
            fn(self.session_present)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        self._disconnected.set()
        if was:
            log.warning("disconnected from broker", extra={"fields": {"client": self.name, "reason": str(reason)}})
            self._learn_limit()
            for fn in self.on_disconnect:
                fn()

    def _learn_limit(self) -> None:
        """The broker closed the connection with a large message of ours just sent and not acknowledged: its
        limit is below that message. Lower ours, and drop what paho holds over it (it would send it again at
        every reconnect, and be cut off again)."""
        big, self._big = self._big, None
        if big is None or self._now() - big[0] > LEARN_WITHIN_S or big[1] > self.max_payload:
            return
        # Halved, not just below it: the limit may be far below (a 500 KB result shortened to 499 KB for a 300
        # KB broker was cut off again, and again); a limit lower than the broker's only shortens more.
        self.max_payload = max(big[1] // 2, LEARN_MIN - 1)
        dropped: list[int] = []
        out = getattr(self.client, "_out_messages", None)
        lock = getattr(self.client, "_out_message_mutex", None)
        if out is not None and lock is not None:
            with lock:
                for mid, m in list(out.items()):
                    if len(getattr(m, "payload", b"")) > self.max_payload:
                        del out[mid]
                        dropped.append(int(mid))
        log.error("the broker closed the connection just after a message of %d bytes: its message limit is lower "
                  "than mqtt.max_payload_bytes (%d); nothing over %d bytes is sent from now on", big[1],
                  self.settings.max_payload_bytes, self.max_payload,
                  extra={"fields": {"client": self.name, "dropped_mids": dropped}})
        for fn in self.on_too_large:
            fn(big[1], self.max_payload, dropped)

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.on_message(Message(msg.topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.retain), self.connection))

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        if self._big is not None and self._big[2] == mid:
            self._big = None
        self.on_puback(mid)

    # -- public API -------------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> int | None:
        """Queue a message; returns its mid (PUBACK arrives via `on_puback`), or None if paho refused it.
        Raises TooLarge for a message over the broker's limit."""
        size = len(payload)
        if isinstance(payload, str) and 4 * size > self.max_payload:  # only then can its UTF-8 be over: measure it
            size = len(payload.encode("utf-8"))
        if size > self.max_payload:
            raise TooLarge(topic, size, self.max_payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return None
        if qos > 0 and size >= LEARN_MIN and self.connected.is_set() and (self._big is None or size > self._big[1]):
            self._big = (self._now(), size, int(info.mid))
        return int(info.mid)

    def unacked_mids(self) -> set[int] | None:
        """The mids of the QoS > 0 messages paho still holds to send (again) until their PUBACK, or None if this
        paho does not say. paho has no public accessor; its queue is read without taking its lock, which is
        safe here because every paho call runs on the loop's thread, except the connect in the executor, and
        this is called from the CONNACK callback (on the loop's thread, after that connect)."""
        out = getattr(self.client, "_out_messages", None)
        if out is None:
            return None
        try:
            return {int(mid) for mid in list(out)}
        except (TypeError, ValueError, RuntimeError):
            return None

    def ack(self, msg: Message) -> bool:
        """Acknowledge a received message, only on the connection that delivered it (else the broker
        redelivers it, which is what we want)."""
        if msg.qos == 0 or msg.connection != self.connection or not self.connected.is_set():
            return False
        return self.client.ack(msg.mid, msg.qos) == MQTTErrorCode.MQTT_ERR_SUCCESS

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscriptions.append((topic, qos))
        if self.connected.is_set():
            self.client.subscribe(topic, qos)

    async def run(self) -> None:
        """Connect, stay connected, reconnect with capped backoff; runs until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        s = self.settings
        delay = s.reconnect_min_s
        misc = asyncio.create_task(self._misc(), name=f"{self.name}-misc")
        try:
            while True:
                self._disconnected.clear()
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                    async with asyncio.timeout(s.connect_timeout_s + 1):
                        await self._loop.run_in_executor(None, self._connect_blocking)
                except (OSError, TimeoutError, ssl.SSLError, ValueError) as e:
                    msg = f"cannot reach broker {s.host}:{s.port}: {e}"
                    self.short_run = 0  # the broker went down: its connections were not closed on purpose
                    if msg != self.last_error:
                        log.warning(msg, extra={"fields": {"client": self.name}})
                    self.last_error = msg
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, s.reconnect_max_s)
                    continue
                try:
                    async with asyncio.timeout(s.connect_timeout_s + 5):
                        await self._connected_or_closed()
                except TimeoutError:
                    self.client.disconnect()
                if not self.connected.is_set():
                    # No CONNACK in time, a refusal, or the connection closed during the handshake (a proxy or
                    # a broker going down): try again after the backoff, not after the whole timeout.
                    self._force_close()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, s.reconnect_max_s)
                    continue
                delay = s.reconnect_min_s
                self._connected_at = self._loop.time()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SHORT_S):
                        await self._disconnected.wait()
                if not self._disconnected.is_set():
                    self._after_connection(SHORT_S)  # it lasts: a flapping run ends now, not when it ends
                    await self._disconnected.wait()
                self._force_close()
                delay = self._after_connection(self._loop.time() - self._connected_at)
                await asyncio.sleep(delay)
        finally:
            misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await misc
            self._force_close()

    def _after_connection(self, lasted_s: float) -> float:
        """The wait before reconnecting after a connection that lasted `lasted_s`: the usual short one, or,
        when the broker keeps closing connections at once, a growing one (FLAP_MAX_S at most)."""
        s = self.settings
        if lasted_s >= SHORT_S:
            if self.flapping:
                self.flapping = False
                for fn in self.on_flapping:
                    fn(0)
            self.short_run = 0
            return s.reconnect_min_s
        self.short_run += 1
        if self.short_run < FLAP_AFTER:
            return s.reconnect_min_s
        if self.short_run == FLAP_AFTER:
            log.error("the broker closes this client's connection right after each connect: another client with "
                      "client id %r (a second gateway with this site and gateway?) or a message it refuses",
                      s.client_id, extra={"fields": {"client": self.name, "host": s.host}})
        self.flapping = True
        for fn in self.on_flapping:
            fn(self.short_run)
        return float(min(s.reconnect_max_s * 2.0 ** (self.short_run - FLAP_AFTER + 1), FLAP_MAX_S))

    async def _connected_or_closed(self) -> None:
        waits = [asyncio.ensure_future(self.connected.wait()), asyncio.ensure_future(self._disconnected.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    def _connect_blocking(self) -> None:
        self.client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)

    def _force_close(self) -> None:
        sock = self._sock
        if sock is not None:
            self._unregister(sock)
        # paho forgets its socket and keeps its queue of unacknowledged messages for the next connection.
        with contextlib.suppress(Exception):
            self.client._sock_close()  # paho has no public "drop the socket, keep the session"
        self.connected.clear()

    async def _misc(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.connected.is_set():
                rc = self.client.loop_misc()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self.connected.is_set():
                    self.connected.clear()
                    self._disconnected.set()

    async def disconnect(self) -> None:
        """A clean DISCONNECT (the broker then does not publish the Last Will)."""
        if self.connected.is_set():
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._disconnected.wait()
