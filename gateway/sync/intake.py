"""Command intake: hub commands from `P/cmd/{name}`, one at a time, in arrival order.

Each command is parsed and validated into a typed command, applied through the domain, and its effect and
result are committed together; only then is the result published and the message acknowledged to the
broker (paho manual ack). A crash in between loses nothing: the broker redelivers, and the stored result
answers the repeat without applying it twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from gateway import bulkwork
from gateway.bulk import BulkApplier
from gateway.bulkwork import StreamError, WorkerLost
from gateway.clock import Clock, rfc3339
from gateway.domain.alarms import raise_alarm
from gateway.domain.api import apply_command
from gateway.domain.commands import BULK_COMMANDS, COMMANDS, BulkPart, Command, SyncAck, SyncReplay, SyncSnapshot
from gateway.journal import JournalError
from gateway.jsontext import dumps, loads_strict
from gateway.service import FloorService
from gateway.sync.mqtt import LEARN_MIN, AsyncMqtt, Message, TooLarge
from gateway.sync.publisher import OutboxPublisher

log = logging.getLogger("floorgate.intake")

_CMD_ID = re.compile(rb'"cmd_id"\s*:\s*"((?:[^"\\]|\\.){1,128})"')
RETRY_S = 1.0
STREAM_BYTES = 64 * 1024
BULK_LISTS = ("skus", "locations", "operators", "cartons", "orders")


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(x) for x in err["loc"]) or "payload"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    more = f" (and {e.error_count() - 3} more)" if e.error_count() > 3 else ""
    return "; ".join(parts) + more


def _cmd_id_hint(payload: bytes) -> str | None:
    """The cmd_id of a payload that cannot be parsed whole (too large, too deep), if its start or its end shows
    one (a hub that adds `cmd_id` last got a `too_large` it could not match: `cmd_id` null)."""
    m = _CMD_ID.search(payload[:4096]) or _CMD_ID.search(payload[-4096:])
    if m is None:
        return None
    try:
        cmd_id = loads_strict(b'"' + m.group(1) + b'"')  # a bad escape or bad UTF-8 in it: no cmd_id
    except ValueError:
        return None
    return cmd_id if isinstance(cmd_id, str) else None


class CommandIntake:
    def __init__(self, service: FloorService, mqtt: AsyncMqtt, publisher: OutboxPublisher, bulk: BulkApplier,
                 prefix: str, max_payload_bytes: int, clock: Clock,
                 snapshot: Callable[[], Awaitable[None]]) -> None:
        self.service = service
        self.journal = service.journal
        self.mqtt = mqtt
        self.publisher = publisher
        self.bulk = bulk
        self.prefix = prefix
        self.cmd_prefix = f"{prefix}/cmd/"
        # Other subscribed topics (the gateway's own status: HubLink._status_seen): handled and acknowledged in
        # the queue's order, since a QoS 1 message is acknowledged in the order it arrived (MQTT 3.1.1 4.6.0-2).
        self.other_topics: dict[str, Callable[[Message], None]] = {}
        self.max_payload = max_payload_bytes
        self._large: dict[int, dict[str, Any]] = {}  # mid -> a large result, until the client is past it
        self.clock = clock
        self.snapshot = snapshot
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self.handled = 0
        self.rejected = 0
        self.ignored_retained = 0  # retained copies of commands, acknowledged and not handled (handle)
        self._ack_unsaved = False

    def on_message(self, msg: Message) -> None:
        if msg.topic.startswith(self.cmd_prefix) or msg.topic in self.other_topics:
            self._queue.put_nowait(msg)

    async def run(self) -> None:
        while True:
            msg = await self._queue.get()
            while True:
                try:
                    await self.handle(msg)
                    break
                except (JournalError, WorkerLost, sqlite3.OperationalError) as e:
                    # Not stored, not answered, not acked: try again (in order) when the journal is back (or
                    # with a fresh bulk worker process). A read that failed (disk I/O, out of file descriptors)
                    # is the journal's trouble too, not the command's: it must not be refused as a defect.
                    log.warning("command waits to be stored", extra={"fields": {"topic": msg.topic,
                                                                               "error": str(e)}})
                    await asyncio.sleep(RETRY_S)
                except Exception as e:
                    # A defect met by one command must not stop the gateway: unanswered and unacked, the broker
                    # would deliver it again after the restart, and stop the gateway again, every time.
                    await self._poisoned(msg, e)
                    break

    async def _poisoned(self, msg: Message, e: Exception) -> None:
        """Answered and acknowledged, with the whole traceback in the log for whoever fixes it. The answer is
        the stored one where the command's effect was committed before the defect (a snapshot or a bulk set's
        start that failed after it): an `invalid_payload` there was contradicted by the `ok` a resend got.
        Otherwise `invalid_payload`, not stored: a resend after the fix is handled afresh."""
        cmd_id = _cmd_id_hint(msg.payload)
        log.exception("command could not be handled: answered and acknowledged", extra={
            "fields": {"topic": msg.topic, "cmd_id": cmd_id}})
        try:
            stored = await self.journal.command_result(cmd_id) if cmd_id is not None else None
        except Exception:  # the journal's own trouble: the defect's answer still goes out
            log.exception("could not look up the command's stored result", extra={"fields": {"cmd_id": cmd_id}})
            stored = None
        if stored is None:
            self.rejected += 1
        try:
            self.publish_result(stored if stored is not None else self._error(
                cmd_id, "invalid_payload", f"the gateway could not handle this command ({type(e).__name__}); "
                                           "the details are in its log"))
        finally:
            self.mqtt.ack(msg)

    def dropped(self, mids: list[int]) -> None:
        """The client dropped these messages, over the broker's limit as it turned out: results among them go
        out again, shortened to the new limit."""
        for mid in mids:
            result = self._large.pop(mid, None)
            if result is not None:
                self.publish_result(result)

    def _error(self, cmd_id: str | None, code: str, message: str, **extra: Any) -> dict[str, Any]:
        return {"cmd_id": cmd_id, "ok": False, "ts": rfc3339(self.clock.now()),
                "error": {"code": code, "message": message, **extra}}

    def publish_result(self, result: dict[str, Any]) -> None:
        """A result over the broker's message limit (a bulk set's `rejected` list of thousands) is sent with as
        much of that list as fits, and `rejected_count` / `rejected_truncated` saying so; published whole, it got
        the connection closed at every reconnect, and no later result or event went out."""
        topic = f"{self.prefix}/cmd_result"
        payload = dumps(result)
        try:
            mid = self.mqtt.publish(topic, payload, qos=1)
            if mid is not None and len(payload) >= LEARN_MIN:  # the broker may yet prove it too large
                self._large[mid] = result
                while len(self._large) > 16:
                    del self._large[next(iter(self._large))]
            return
        except TooLarge as e:
            short = shortened(result, e.limit)
        log.warning("result shortened to the broker's message limit", extra={"fields": {
            "cmd_id": result.get("cmd_id"), "rejected": len(result.get("rejected") or []),
            "kept": len(short.get("rejected") or [])}})
        try:
            self.mqtt.publish(topic, dumps(short), qos=1)
        except TooLarge as e:
            log.error("result not sent: over the broker's message limit even when shortened",
                      extra={"fields": {"cmd_id": result.get("cmd_id"), "bytes": e.size, "limit": e.limit}})

    async def handle(self, msg: Message) -> None:
        other = self.other_topics.get(msg.topic)
        if other is not None:
            try:
                other(msg)
            finally:
                self.mqtt.ack(msg)
            return
        name = msg.topic[len(self.cmd_prefix):]
        if msg.retain:
            # A retained command comes again at every (re)subscription, i.e. at every reconnect: answered from
            # its stored result each time, and applied a second time once that result was pruned. Commands are
            # not retained (SPEC: QoS 1 on a persistent session, resent by the hub while unanswered), so this
            # copy is only acknowledged. (An empty retained payload is the hub clearing one.)
            self.ignored_retained += 1
            if msg.payload:
                log.warning("retained command ignored: commands must not be retained; a live copy (or the hub's "
                            "resend) is handled", extra={"fields": {"command": name,
                                                                   "cmd_id": _cmd_id_hint(msg.payload)}})
            self.mqtt.ack(msg)
            return
        results = await self._process(name, msg.payload)
        for r in results:
            if not r.get("ok"):
                self.rejected += 1
                log.warning("command refused", extra={"fields": {
                    "command": name, "cmd_id": r.get("cmd_id"), "code": r["error"]["code"],
                    "reason": r["error"]["message"][:300]}})
            self.publish_result(r)
        self.handled += 1
        self.mqtt.ack(msg)

    async def _process(self, name: str, payload: bytes) -> list[dict[str, Any]]:
        if len(payload) > self.max_payload:
            cmd_id = _cmd_id_hint(payload)
            return [self._error(cmd_id, "too_large", f"payload of {len(payload)} bytes is over "
                                f"mqtt.max_payload_bytes ({self.max_payload}); split it into parts")]
        try:
            if name in BULK_COMMANDS and len(payload) > STREAM_BYTES:
                # A bulk part of megabytes is parsed, counted and compressed in the bulk worker process: scans
                # never wait behind it. Its items are read again (there too) when the set is applied.
                data, counts, stored = await self.bulk.worker.run(bulkwork.receive, payload, BULK_LISTS)
                part: tuple[bytes, int] | None = (stored, sum(counts.values()))
            else:
                data, part = loads_strict(payload), None
        except ValueError as e:  # not UTF-8, not JSON, NaN, a lone surrogate (StreamError is one too)
            return [self._error(_cmd_id_hint(payload), "invalid_payload",
                                f"not JSON: {e}" if not isinstance(e, StreamError) else str(e))]
        except RecursionError:  # json.loads gives up on ~1,000 levels of nesting; no command has more than 5
            return [self._error(_cmd_id_hint(payload), "invalid_payload", "JSON nested too deeply")]
        if not isinstance(data, dict):
            return [self._error(None, "invalid_payload", "the payload must be a JSON object")]
        cmd_id = data.get("cmd_id")
        if not isinstance(cmd_id, str) or not cmd_id or len(cmd_id) > 128:
            carried = cmd_id if isinstance(cmd_id, str) and cmd_id else None  # SPEC: "or the cmd_id it did carry"
            return [self._error(carried, "invalid_payload", "cmd_id is missing or not a string of 1-128 characters")]
        if name == "sync.ack":
            await self._sync_ack(data)
            return []
        previous = await self.journal.command_result(cmd_id)
        if previous is not None:
            out = [previous]
            if name in BULK_COMMANDS and isinstance(data.get("sync_id"), str):
                done = await self.bulk.done_result(data["sync_id"])
                if done is not None and done.get("cmd_id") == cmd_id:
                    out.append(done)
            return out
        model = COMMANDS.get(name)
        if model is None:
            result = self._error(cmd_id, "unknown_command", f"unknown command {name!r}; known: "
                                 + ", ".join(sorted(COMMANDS)))
            return [await self._store(name, cmd_id, result)]
        try:
            cmd = model.model_validate(data)
        except ValidationError as e:
            return [await self._store(name, cmd_id, self._error(cmd_id, "invalid_payload", _validation_message(e)))]
        return [await self._apply(name, cmd, data, payload, part)]

    async def _store(self, name: str, cmd_id: str, result: dict[str, Any]) -> dict[str, Any]:
        """Record a refusal under its cmd_id so a repeat gets the same answer."""
        def op(floor: Any, change: Any) -> None:
            change.result = (cmd_id, name, result)
        await self.service.execute(op)
        return result

    async def _apply(self, name: str, cmd: Command, data: dict[str, Any], raw: bytes,
                     part: tuple[bytes, int] | None) -> dict[str, Any]:
        if isinstance(cmd, SyncReplay):
            return await self._replay(name, cmd)
        if isinstance(cmd, SyncSnapshot):
            result = await self.service.execute_command(name, cmd.cmd_id, lambda f, c: {})
            await self.snapshot()
            return result
        if isinstance(cmd, BulkPart):
            if part is None:  # a small part, parsed whole here: 64 KB compress in well under a millisecond
                part = (zlib.compress(raw, bulkwork.COMPRESS_LEVEL),
                        sum(len(v) for k, v in data.items() if k in BULK_LISTS and isinstance(v, list)))
            stored, items = part
            result = await self.service.execute_command(
                name, cmd.cmd_id, lambda f, c: self.bulk.accept(c, name, cmd, stored, items), background=True)
            if result.get("ok") and result.get("complete"):
                self.bulk.kick(cmd.sync_id)
            return result
        at = self.service.at()
        return await self.service.execute_command(name, cmd.cmd_id, lambda f, c: apply_command(f, c, cmd, at))

    async def _replay(self, name: str, cmd: SyncReplay) -> dict[str, Any]:
        """A range of this journal, or of the journal a restore replaced: its events before the restore's first
        seq are still stored, under their old id, until the hub has them (gateway/ops/backup.py). They were sent
        again only if the broker had not taken them; one the broker took and then lost could not be asked for
        under either id, and the hub's gap stayed open."""
        j = self.journal
        before = j.meta.get("restored_from_journal_id")
        last = j.last_seq
        earliest = await j.earliest_seq()
        if cmd.journal == before and before:
            last = j.start_seq - 1  # the old journal ended where this one began
            earliest = await j.earliest_seq(before)
        if cmd.journal != j.journal_id and (cmd.journal != before or not before):
            result = self._error(cmd.cmd_id, "replay_unavailable",
                                 f"journal {cmd.journal} is not this gateway's journal ({j.journal_id})",
                                 earliest_seq=earliest, journal=j.journal_id)
        elif cmd.journal == j.journal_id and before and cmd.from_seq < j.start_seq:
            result = self._error(cmd.cmd_id, "replay_unavailable",
                                 f"journal {j.journal_id} begins at seq {j.start_seq} (a restore); the events before "
                                 f"it are journal {before}'s: ask for them under that id",
                                 earliest_seq=j.start_seq, journal=before)
        elif cmd.from_seq < earliest:
            result = self._error(cmd.cmd_id, "replay_unavailable",
                                 f"events before seq {earliest} are no longer stored", earliest_seq=earliest)
        else:
            to = min(cmd.to_seq or last, last)
            # Events held back (over the broker's message limit) are not sent: counted and named as such, or
            # the hub was told they were served and its gap stayed open.
            held = sorted(s for s in self.publisher.held_back if cmd.from_seq <= s <= to)
            result = {"cmd_id": cmd.cmd_id, "ok": True, "ts": rfc3339(self.clock.now()), "from_seq": cmd.from_seq,
                      "to_seq": to, "count": max(to - cmd.from_seq + 1 - len(held), 0)}
            if held:
                result["held_back"] = held[:100]
            if to >= cmd.from_seq:
                self.publisher.replay(cmd.from_seq, to)
        return await self._store(name, cmd.cmd_id, result)

    async def _rolled_back(self, up_to_seq: int) -> None:
        """The hub holds events of this journal beyond its last: the database was rolled back under the same
        journal id (a disk snapshot, a copied file), and the seqs after its end are being used again for other
        events. Clamped to the last seq, the ack marked events the hub never got as held (then pruned); it is
        ignored, and a critical alarm says what happened and what to do."""
        last, jid = self.journal.last_seq, self.journal.journal_id
        log.error("the hub acked events this journal does not have: rolled back under the same id", extra={
            "fields": {"journal": jid, "hub_acked": up_to_seq, "last_seq": last}})
        at = self.service.at()
        # No live figures in the text (they are in the log): the hub acks every half second, and an alarm whose
        # text changes is raised again.
        message = (f"the hub holds events of journal {jid} beyond this journal's end: its database was rolled "
                   f"back (a disk snapshot or a copied file) under the same id, and seqs the hub has are being "
                   f"given to other events. Stop the gateway and run `floorgate restore --from` a copy of its "
                   f"database: the restored journal gets a new id")
        try:
            await self.service.execute(lambda f, c: raise_alarm(f, c, "journal_rolled_back", "journal_rolled_back",
                                                                "critical", message, at.wall))
        except JournalError as e:
            log.warning("rollback alarm not stored", extra={"fields": {"error": str(e)}})

    async def _sync_ack(self, data: dict[str, Any]) -> None:
        try:
            ack = SyncAck.model_validate(data)
        except ValidationError as e:
            log.warning("sync.ack ignored", extra={"fields": {"reason": _validation_message(e)}})
            return
        if ack.journal != self.journal.journal_id:
            log.warning("sync.ack for another journal ignored", extra={"fields": {"journal": ack.journal}})
            return
        if ack.up_to_seq > self.journal.last_seq:
            await self._rolled_back(ack.up_to_seq)
            return
        if self.publisher.hub_ack(ack.up_to_seq) or self._ack_unsaved:
            try:
                await self.journal.set_meta("hub_acked_seq", str(self.publisher.hub_acked))
                self._ack_unsaved = False
            except (sqlite3.Error, JournalError) as e:
                self._ack_unsaved = True  # a hub that repeats the same ack gets it saved then too
                # Bookkeeping, as the publisher's watermark: held in memory and saved with the next ack. Retried
                # as a command, it held up every command behind it for as long as the disk stayed full, and
                # those never got their `busy`.
                log.warning("hub's ack not saved; saved with the next one", extra={"fields": {"error": str(e)}})


def shortened(result: dict[str, Any], limit: int) -> dict[str, Any]:
    """The result with the longest head of its `rejected` list that fits in `limit` bytes."""
    rejected = result.get("rejected")
    if not isinstance(rejected, list) or not rejected:
        return result
    lo, hi = 0, len(rejected)
    while lo < hi:  # the most items that fit
        mid = (lo + hi + 1) // 2
        if len(dumps(_with(result, rejected, mid)).encode("utf-8")) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return _with(result, rejected, lo)


def _with(result: dict[str, Any], rejected: list[Any], n: int) -> dict[str, Any]:
    return {**result, "rejected": rejected[:n], "rejected_count": len(rejected), "rejected_truncated": True}
