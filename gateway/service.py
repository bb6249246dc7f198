"""The floor service: runs pure domain operations against the in-memory floor and commits what they
changed through the journal before anyone is told.

The order is always: the domain decides (synchronously, so no other operation interleaves) -> the journal
commits the change with its events -> signals (lights, beeps, page updates) go out. If a commit fails,
memory is rebuilt from the database, so the floor never acts on something that was not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from gateway.clock import Clock, rfc3339
from gateway.config import Config
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.domain.change import Change
from gateway.domain.dispatch import DispatchEngine, DispatchSettings
from gateway.domain.errors import DomainError
from gateway.domain.floor import STORAGE_FULL, STORAGE_OK, STORAGE_WARNING, Floor
from gateway.domain.lights import rebuild_modules
from gateway.domain.model import FINAL_STATES, At
from gateway.domain.rules import FloorRules
from gateway.domain.sessions import end_page_sessions
from gateway.domain.tasks import restore_dispatch
from gateway.journal import Journal, JournalError, JournalUnavailable, StorageFull

COMMAND_RESULTS_MIN_H = 24  # see prune_commands

log = logging.getLogger("floorgate.service")


def settle_heap() -> None:
    """Move the long-lived objects (the floor, its master data) out of the cyclic GC's sight.

    A full collection walks every tracked object: with 100,000 SKUs in memory that is a 150-350 ms pause, a
    scan left waiting. Young garbage is collected first, then what survives is frozen (`gc.freeze`); frozen
    objects are still freed by reference counting when the floor lets go of them (entities hold no cycles).
    """
    gc.collect(1)
    gc.freeze()
T = TypeVar("T")
Op = Callable[[Floor, Change], T]

RECOVER_RETRY_S = 0.5  # first wait before reading the journal back again, doubling to RECOVER_MAX_S
RECOVER_MAX_S = 30.0
RECOVER_TRIES = 8  # then the gateway gives up (about 90 s): a fresh process (systemd) opens the journal anew
DISK_RESERVE_BYTES = 32 * 1024 * 1024  # below this much free disk, only work in progress may commit


def dispatch_engine(cfg: Config, start: float) -> DispatchEngine:
    """The engine with the strategies, A/B split and escalation schedule of `[dispatch]`."""
    from zoneinfo import ZoneInfo

    from gateway.domain.dispatch import ABSplit, EscalationSchedule, LearnedThresholds, StrategyTable

    d = cfg.dispatch
    ab = None
    if d.ab.share > 0:
        ab = ABSplit(d.ab.candidate, d.ab.share, frozenset(d.ab.zones) if d.ab.zones else None, d.ab.salt)
    schedule = EscalationSchedule.parse(
        [{"from": e.start, "after_min": e.after_min, "cold_chain_after_min": e.cold_chain_after_min}
         for e in d.escalation_schedule], d.escalate_after_min, d.escalate_cold_chain_after_min, ZoneInfo(d.timezone))
    return DispatchEngine(DispatchSettings.from_config(d), strategies=StrategyTable(d.strategy, d.zone_strategies, ab),
                          schedule=schedule, learned=LearnedThresholds() if d.learned_thresholds else None,
                          start=start)


class FloorService:
    def __init__(self, cfg: Config, journal: Journal, clock: Clock) -> None:
        self.cfg = cfg
        self.journal = journal
        self.clock = clock
        self.rules = FloorRules.from_config(cfg)
        self.floor = self._new_floor()
        self._signal_handlers: list[Callable[[Any], None]] = []
        self._recovering: asyncio.Event | None = None
        self.gave_up: asyncio.Event = asyncio.Event()  # rebuilding failed RECOVER_TRIES times (RecoveryWatch)
        self._recover_task: asyncio.Task[None] | None = None
        self._hard_full = False  # a commit found no room, and no write since has found room
        self._full_unreported = False  # ... and the storage alarm of that has not been stored yet
        self.storage_bytes = 0
        journal.on_failure(self._on_journal_failure)

    async def start(self) -> None:
        await self.reload()
        at = self.at()
        try:
            ended = await self.execute(lambda f, c: end_page_sessions(f, c, at))
        except JournalError as e:  # they end by the idle logout instead
            log.warning("page sessions of the last run not ended", extra={"fields": {"error": str(e)}})
        else:
            if ended:
                log.info("page sessions of the last run ended", extra={"fields": {"sessions": ended}})
        if not self.journal.integrity_ok:
            detail = "; ".join(self.journal.integrity[:3])
            await self.execute(lambda f, c: raise_alarm(
                f, c, "db_integrity", "db_integrity", "critical",
                f"database quick_check failed: {detail}. Take a backup and run `floorgate doctor`.",
                self.clock.now()))

    def _new_floor(self) -> Floor:
        return Floor(self.cfg.site, self.cfg.gateway, self.rules, dispatch_engine(self.cfg, self.clock.monotonic()))

    def at(self) -> At:
        """Now, on both clocks."""
        return At(self.clock.now(), self.clock.monotonic())

    async def reload(self) -> None:
        """Rebuild the floor from what is committed."""
        meta = await self.journal.read_meta()
        floor = self._new_floor()
        floor.md_gen = int(meta.get("md_gen", "1"))
        floor.sscc_last = int(meta.get("sscc_last_serial", "0"))
        floor.load_masterdata(await self.journal.load_masterdata(floor.md_gen))
        floor.load_docs(await self.journal.load_docs())
        floor.rebuild()
        rebuild_modules(floor)
        at = self.at()
        for s in floor.sessions.values():
            s.last_mono = at.mono  # a restart counts as activity: nobody is logged out for it
        restore_dispatch(floor, at)
        floor.set_storage(self.floor.storage)
        self.floor = floor
        settle_heap()

    def on_signal(self, fn: Callable[[Any], None]) -> None:
        self._signal_handlers.append(fn)

    def off_signal(self, fn: Callable[[Any], None]) -> None:
        if fn in self._signal_handlers:
            self._signal_handlers.remove(fn)

    # -- running operations ------------------------------------------------------------------------

    async def execute(self, op: Op[T], *, cmd_id: str | None = None, background: bool = False) -> T:
        """Run `op` on the floor and commit its change; returns once it is durable. `background` marks bulk
        work (its rows may commit without an fsync of their own: see journal _Rows.relaxed)."""
        if self._recovering is not None:
            await self._recovering.wait()
        if self._hard_full:
            # The last commit found no room: unless a small write shows there is room now, this one would fail
            # too, and each failure rebuilds the floor from the journal (seconds with 100,000 SKUs). Refused
            # before anything changes; the caller shows nothing, as for a failed commit.
            if not await self._room_again():
                raise StorageFull("storage full: nothing can be stored until there is room again")
            self._hard_full = False
        change = Change(cmd_id=cmd_id, background=background)
        value = self._run(op, change)
        await self._commit(change)
        return value

    async def execute_command(self, name: str, cmd_id: str, op: Op[dict[str, Any] | None], *,
                              background: bool = False) -> dict[str, Any]:
        """Run a hub command: its effect and its result commit together, so a repeat is answered, not applied."""
        if self._recovering is not None:
            await self._recovering.wait()
        change = Change(cmd_id=cmd_id, background=background)
        ts = rfc3339(self.clock.now())
        try:
            extra = self._run(op, change) or {}
            result: dict[str, Any] = {"cmd_id": cmd_id, "ok": True, "ts": ts, **extra}
        except DomainError as e:
            change = Change(cmd_id=cmd_id, background=background)
            result = {"cmd_id": cmd_id, "ok": False, "ts": ts, "error": e.as_error()}
        if result["ok"] or result["error"]["code"] != "busy":
            # `busy` is transient (storage full): not stored, so the hub's resend is tried afresh.
            change.result = (cmd_id, name, result)
        await self._commit(change)
        return result

    def _run(self, op: Op[T], change: Change) -> T:
        try:
            return op(self.floor, change)
        except DomainError:
            if not change.empty:
                # A refusal after a change was recorded would leave memory ahead of disk: rebuild.
                log.error("domain refused after changing state; rebuilding from the journal")
                self._start_recovery(None)
            raise
        except Exception:
            log.exception("domain operation failed; rebuilding the floor from the journal")
            self._start_recovery(None)
            raise

    async def _commit(self, change: Change) -> None:
        if change.empty:
            self._emit_signals(change)
            return
        try:
            await self.journal.submit(change)
        except JournalError as e:
            if isinstance(e, StorageFull):
                self._hard_full = self._full_unreported = True
                self.floor.set_storage(STORAGE_FULL)
            if self._recovering is not None:
                # Raised only once memory is what is committed again, so a caller that shows something in
                # answer (a light written again) shows what is stored, never the change that failed.
                await self._recovering.wait()
            raise
        self._emit_signals(change)

    def _emit_signals(self, change: Change) -> None:
        for s in change.signals:
            self._emit_signal(s)

    def _emit_signal(self, s: Any) -> None:
        for fn in self._signal_handlers:
            try:
                fn(s)
            except Exception:
                log.exception("signal handler failed", extra={"fields": {"signal": repr(s)[:200]}})

    def notify(self, signal: Any) -> None:
        """A signal with nothing to store (e.g. a device failed before the domain was asked)."""
        self._emit_signal(signal)

    # -- recovery ----------------------------------------------------------------------------------

    def _on_journal_failure(self, err: JournalError) -> None:
        if isinstance(err, StorageFull):
            self._hard_full = self._full_unreported = True
        self._start_recovery(err)

    def _start_recovery(self, err: JournalError | None) -> None:
        if self._recovering is not None:
            return
        self._recovering = asyncio.Event()
        self._recover_task = asyncio.get_running_loop().create_task(self._recover(), name="floor-recover")

    async def stop_recovery(self) -> None:
        """Stop a rebuild still trying (the gateway is stopping: the journal is about to close under it)."""
        task, self._recover_task = self._recover_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _recover(self) -> None:
        ev = self._recovering
        try:
            # Let the writer fail everything queued behind the broken batch before reading back.
            await asyncio.sleep(0)
            delay = RECOVER_RETRY_S
            tries = 0
            while True:
                try:
                    await self.reload()
                    break
                except Exception:
                    # Until memory is what is committed, nothing may commit (the journal refuses): try again
                    # rather than leave the gateway refusing everything until someone restarts it; after
                    # RECOVER_TRIES the gateway stops with an error (App's RecoveryWatch) and systemd starts a
                    # fresh process, which opens the journal anew and checks it.
                    tries += 1
                    if tries >= RECOVER_TRIES and not self.gave_up.is_set():
                        log.critical("the floor could not be rebuilt from the journal; giving up",
                                     extra={"fields": {"tries": tries}})
                        self.gave_up.set()
                    log.exception("rebuilding the floor from the journal failed; trying again",
                                  extra={"fields": {"retry_s": delay, "tries": tries}})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECOVER_MAX_S)
            if self._hard_full:
                self.floor.set_storage(STORAGE_FULL)
            self.journal.reset_after_failure()
            log.warning("floor rebuilt from the journal after a failed operation")
            self._emit_signal(("floor_reloaded",))  # devices show again what is stored (lights)
        finally:
            self._recovering = None
            if ev is not None:
                ev.set()

    # -- storage cap ---------------------------------------------------------------------------------

    async def check_storage(self) -> str:
        """Measure the database against `sync.max_db_mb` and the disk; raise or clear alarms."""
        cap = self.cfg.sync.max_db_mb * 1024 * 1024
        try:
            self.storage_bytes = await self.journal.size_bytes()
            free = shutil.disk_usage(self.journal.path.parent).free
        except (OSError, JournalUnavailable):
            return self.floor.storage
        pct = 100.0 * self.storage_bytes / cap
        if self._hard_full:
            if not await self._room_again():
                self.floor.set_storage(STORAGE_FULL)
                return STORAGE_FULL
            self._hard_full = False
        # A full disk's alarm could not be stored while it lasted: this check stores it, the next may clear it.
        was_full = self._full_unreported
        # Each level is left only some way back from where it was entered: free space moving a few MB around
        # 128 MB (logs written and rotated) raised and cleared storage_near_full at every check, 12 times a
        # minute to the hub, the webhook and the mailbox.
        current = self.floor.storage
        db_full = self.storage_bytes >= cap
        disk_full = free < DISK_RESERVE_BYTES * (1.25 if current == STORAGE_FULL else 1.0)
        db_near = pct >= (80 if current == STORAGE_OK else 75)
        disk_near = free < DISK_RESERVE_BYTES * (4.0 if current == STORAGE_OK else 4.5)
        if db_full or disk_full or was_full:
            level = STORAGE_FULL
        elif db_near or disk_near:
            level = STORAGE_WARNING
        else:
            level = STORAGE_OK
        now = self.clock.now()
        # The messages name the condition, not the live figures: an alarm whose text changes is raised again,
        # and "91 MB free on disk" moving with every other program's writes raised storage_near_full anew every
        # 5 s, to the hub and the pages (in 5% steps too: a database at a step moves across it with its WAL).
        cap_mb, reserve_mb = self.cfg.sync.max_db_mb, DISK_RESERVE_BYTES // 2**20
        if level == STORAGE_FULL:
            why = [f"the database reached sync.max_db_mb ({cap_mb} MB)" if db_full else "",
                   f"under {reserve_mb} MB free on disk" if disk_full else "",
                   "the disk was full" if was_full and not db_full and not disk_full else ""]
        else:
            why = [f"the database at 80% or more of sync.max_db_mb ({cap_mb} MB)" if db_near else "",
                   f"under {4 * reserve_mb} MB free on disk" if disk_near else ""]
        reason = "; ".join(w for w in why if w)

        def apply(f: Floor, c: Change) -> None:
            f.set_storage(level)
            if level == STORAGE_FULL:
                raise_alarm(f, c, "storage_full", "storage_full", "critical",
                            f"storage full ({reason}): new orders and tasks are refused; check the uplink so the "
                            "hub can ack and events can be pruned, free disk space, or raise sync.max_db_mb", now)
                clear_alarm(f, c, "storage_near_full")
            elif level == STORAGE_WARNING:
                raise_alarm(f, c, "storage_near_full", "storage_near_full", "warning",
                            f"storage nearly full: {reason}", now)
                clear_alarm(f, c, "storage_full")
            else:
                clear_alarm(f, c, "storage_near_full")
                clear_alarm(f, c, "storage_full")

        try:
            await self.execute(apply)
        except StorageFull:
            return STORAGE_FULL
        except JournalError:
            return self.floor.storage
        if level == STORAGE_FULL:
            self._full_unreported = False
        return level

    async def _room_again(self) -> bool:
        """One row written outside the floor: while SQLite still has no room, the alarm's change would fail
        too, and every failed change rebuilds the floor from the journal (seconds with 100,000 SKUs, every
        check)."""
        async def probe(db: Any) -> None:
            # 64 KB written and freed in one commit: room for real work, not just for a row that fits in a page
            # with space left (the WAL frames are written, so a full disk fails it too).
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('storage_probe', zeroblob(65536))")
                await db.execute("DELETE FROM meta WHERE key = 'storage_probe'")
                await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                raise
        try:
            await self.journal.run_job(probe)
        except (sqlite3.Error, JournalError):
            return False
        return True

    # -- pruning ------------------------------------------------------------------------------------

    async def forget_finished_orders(self, hub_acked_seq: int) -> int:
        """Drop packed and cancelled orders from memory once the hub holds their last event and that event
        is older than the retention (their events and audit rows stay until pruned on their own)."""
        from gateway.domain.orders import forget_orders

        candidates = {o.updated_seq: o.order_id for o in self.floor.orders.values()
                      if o.state in FINAL_STATES and 0 < o.updated_seq <= hub_acked_seq}
        if not candidates:
            return 0
        cutoff = rfc3339(self.clock.now() - timedelta(hours=self.cfg.sync.retention_h))
        young: set[int] = set()
        seqs = list(candidates)
        for i in range(0, len(seqs), 500):
            part = seqs[i:i + 500]
            rows = await self.journal.reader.execute_fetchall(
                f"SELECT seq FROM events WHERE seq IN ({','.join('?' * len(part))}) AND ts >= ?", (*part, cutoff))
            young |= {int(r[0]) for r in rows}
        old = [oid for seq, oid in candidates.items() if seq not in young]
        if not old:
            return 0
        n = await self.execute(lambda f, c: forget_orders(f, c, old))
        settle_heap()
        return int(n)

    async def prune_commands(self) -> int:
        """Results kept for dedup live as long as events do, and at least COMMAND_RESULTS_MIN_H: the hub resends
        long before that (the rules of what stays are in `Journal.prune_command_results`). With a short
        `sync.retention_h` (0 in a test) a resend an hour later was applied a second time."""
        hours = max(self.cfg.sync.retention_h, COMMAND_RESULTS_MIN_H)
        cutoff = rfc3339(self.clock.now() - timedelta(hours=hours))
        return await self.journal.prune_command_results(cutoff)

    async def prune_audit(self) -> int:
        cutoff = rfc3339(self.clock.now() - timedelta(days=self.cfg.sync.audit_retention_days))

        async def job(db: Any) -> int:
            cur = await db.execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE ts < ? LIMIT 20000)",
                                   (cutoff,))
            return int(cur.rowcount)
        return int(await self.journal.run_job(job))

    async def prune_masterdata(self, gens: str = "old", chunk: int = 1000) -> int:
        """Delete master data rows that are not live, a chunk per transaction (a scan waits behind one chunk at
        most): `old`, the generations a `replace` has swapped out (100,000 SKUs each, every day); `staging`,
        what a replace that never finished left of the next generation, before a new one is staged there.
        One generation at a time, so each chunk is found by the primary key, not by scanning the generation."""
        live = self.floor.md_gen
        rows = await self.journal.reader.execute_fetchall(
            f"SELECT DISTINCT gen FROM masterdata WHERE gen {'<' if gens == 'old' else '>'} ?", (live,))
        total = 0
        for (gen,) in list(rows):
            total += await self._delete_in_chunks(
                "DELETE FROM masterdata WHERE gen = ? AND (kind, id) IN "
                "(SELECT kind, id FROM masterdata WHERE gen = ? LIMIT ?)", (int(gen), int(gen), chunk), chunk)
        return total

    async def prune_events(self, hub_acked_seq: int, chunk: int = 5000) -> int:
        """Delete events the hub has acked that are older than the retention, a chunk per transaction."""
        cutoff = rfc3339(self.clock.now() - timedelta(hours=self.cfg.sync.retention_h))
        return await self._delete_in_chunks(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq <= ? AND ts < ? "
            "ORDER BY seq LIMIT ?)", (hub_acked_seq, cutoff, chunk), chunk)

    async def _delete_in_chunks(self, sql: str, args: tuple[Any, ...], chunk: int) -> int:
        """Run `sql` (a DELETE of at most `chunk` rows) on the writer, one transaction each, until it deletes
        fewer than `chunk`: a scan's commit waits behind one chunk at most."""
        async def job(db: Any) -> int:
            cur = await db.execute(sql, args)
            return int(cur.rowcount)
        total = 0
        while True:
            n = int(await self.journal.run_job(job))
            total += n
            if n < chunk:
                return total
            await asyncio.sleep(0)
