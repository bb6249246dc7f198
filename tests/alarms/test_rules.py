"""The pieces around the deliveries: retry timing, channel choice from config, typed channel failures,
the worker's order and shutdown. Real receivers where there is I/O; a scripted channel only where the
point is the notifier's own behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.alarms import AlarmNotifier, Notice, PermanentError, RetryPolicy, TransientError
from gateway.alarms.channel import Backoff
from gateway.alarms.notifier import build_channels
from gateway.alarms.webhook import WebhookChannel, channel_id
from gateway.app import Part
from gateway.clock import ManualClock
from gateway.config import Config, ConfigError, WebhookConfig
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.service import FloorService
from tests.alarms.conftest import (
    FAST,
    HttpReceiver,
    alarms_config,
    clear,
    docs,
    gateway,
    notifier,
    raise_,
    running,
    statuses,
    until,
)
from tests.conftest import make_config

NOTICE = Notice("dc1", "zone-a", "storage_full", "storage_full", "critical", "full", "raised",
                "2026-11-23T08:00:00.000Z", "storage_full~x~raised~w")


def test_backoff_doubles_to_a_cap_with_jitter_and_resets() -> None:
    b = Backoff(RetryPolicy(base_s=1, cap_s=8, jitter=0.5), random.Random(7))
    delays = [b.next() for _ in range(6)]
    for d, full in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert full / 2 <= d <= full
    assert len(set(delays)) == 6  # jittered: no two gateways retry in lockstep
    b.reset()
    assert 0.5 <= b.next() <= 1


def test_backoff_honours_retry_after_up_to_a_limit() -> None:
    b = Backoff(RetryPolicy(base_s=1, cap_s=8, max_retry_after_s=60), random.Random(1))
    assert b.next(retry_after_s=30) == 30
    assert b.next(retry_after_s=10_000) == 60
    assert b.next(retry_after_s=0) <= 4


def test_notice_text_and_payload() -> None:
    assert NOTICE.text == "[critical] dc1/zone-a storage_full: full"
    cleared = Notice("dc1", "zone-a", "a", "code", "warning", "cleared: x", "cleared", "t", "id")
    assert cleared.text == "[warning, cleared] dc1/zone-a code: cleared: x"
    assert set(NOTICE.payload()) == {"site", "gateway", "alarm_id", "code", "severity", "message", "state", "ts",
                                     "text"}


def test_webhook_channel_id_is_stable_and_hides_the_token(tmp_path: Path) -> None:
    url = "https://chat.example.test/robot/send?access_token=0123456789abcdef0123"
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[url, "http://127.0.0.1:9/b", url]))
    chans = build_channels(cfg, ManualClock())
    assert [c.id for c in chans] == [channel_id(url), channel_id("http://127.0.0.1:9/b")]  # the repeat dropped
    assert "0123456789abcdef" not in chans[0].id + chans[0].label
    assert chans[0].label == "webhook #1 (chat.example.test)"


def test_smtp_needs_host_and_recipients(tmp_path: Path) -> None:
    """Half an SMTP setting is a config mistake at start-up, not a warning that no mail will ever be sent."""
    for smtp, expected in (({"host": "mail.example.test"}, "expected `to`"),
                           ({"to": ["a@example.test"]}, "expected host")):
        with pytest.raises(ConfigError) as e:
            make_config(tmp_path, alarms={"smtp": smtp})
        assert e.value.key == "alarms.smtp" and expected in e.value.expected


def test_missing_password_file_stops_start_up_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pw"
    cfg = make_config(tmp_path, alarms={"smtp": {"host": "mail.example.test", "to": ["a@example.test"],
                                                 "username": "u", "password_file": str(missing)}})
    with pytest.raises(ConfigError) as e:
        build_channels(cfg, ManualClock())
    assert str(e.value) == (f"{missing}: alarms.smtp.password_file: cannot be read (No such file or directory); "
                            "put the SMTP password in that file (mode 0600) or leave password_file empty")


@contextlib.asynccontextmanager
async def hook(http: HttpReceiver, timeout_s: float = 5) -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel(WebhookConfig(url=http.url, timeout_s=timeout_s))
    try:
        yield ch
    finally:
        await ch.aclose()


@pytest.mark.parametrize(("status", "kind"), [(200, None), (204, None), (301, PermanentError),
                                              (401, PermanentError), (404, PermanentError), (408, TransientError),
                                              (429, TransientError), (502, TransientError)])
async def test_webhook_status_classes(http: HttpReceiver, status: int, kind: type[Exception] | None) -> None:
    http.statuses = [status]
    async with hook(http) as ch:
        if kind is None:
            await ch.send(NOTICE)
        else:
            with pytest.raises(kind) as e:
                await ch.send(NOTICE)
            assert f"HTTP {status}" in str(e.value)
            assert "access_token" not in str(e.value)
    assert len(http.requests) == 1


async def test_webhook_retry_after_is_read(http: HttpReceiver) -> None:
    http.statuses = [429]
    http.headers = {"Retry-After": "17"}
    async with hook(http) as ch:
        with pytest.raises(TransientError) as e:
            await ch.send(NOTICE)
    assert e.value.retry_after_s == 17


async def test_webhook_that_never_answers_is_a_transient_timeout() -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ch = WebhookChannel(WebhookConfig(url=f"http://127.0.0.1:{port}/", timeout_s=0.2))
    try:
        with pytest.raises(TransientError, match=r"no answer within 0.2 s"):
            await ch.send(NOTICE)
    finally:
        await ch.aclose()
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


class ScriptedChannel:
    """A channel whose outcomes the test scripts; stands in only for the far end, never for the notifier."""

    def __init__(self, outcomes: list[Exception | None] | None = None) -> None:
        self.id = "scripted"
        self.label = "scripted"
        self.outcomes = outcomes or []
        self.sent: list[Notice] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def send(self, notice: Notice) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        self.sent.append(notice)

    async def aclose(self) -> None:
        return None


async def test_a_bug_in_a_channel_keeps_the_delivery_pending(
        service: FloorService, cfg: Config, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    ch = ScriptedChannel([RuntimeError("boom"), TransientError("busy", retry_after_s=0)])
    async with running(notifier(cfg, service, clock, channels=[ch])):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["delivered"], "delivered on the third try")
    assert docs(service)[0]["attempts"] == 3 and len(ch.sent) == 1
    assert "alarm channel raised unexpectedly" in caplog.text


async def test_signal_before_run_and_start_up_reconciliation_record_it_once(
        service: FloorService, cfg: Config, clock: ManualClock) -> None:
    ch = ScriptedChannel()
    n = notifier(cfg, service, clock, channels=[ch])
    await raise_(service, clock)  # heard by the signal handler and seen by reconciliation
    async with running(n):
        await until(lambda: statuses(service) == ["delivered"], "delivered")
    assert len(docs(service)) == 1 and len(ch.sent) == 1


async def test_clear_signal_may_carry_its_own_message(service: FloorService, cfg: Config, clock: ManualClock) -> None:
    ch = ScriptedChannel()
    async with running(notifier(cfg, service, clock, channels=[ch])):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["delivered"], "raise")

        def op(f: Floor, c: Change) -> None:
            alarm = f.alarms.pop("storage_full")
            c.delete("alarm", "storage_full")
            c.signal(("alarm_cleared", alarm, "freed 3 GB"))

        await service.execute(op)
        await until(lambda: statuses(service) == ["delivered", "delivered"], "clear")
    assert [n.message for n in ch.sent] == ["storage full (2048 MB of 2048 MB)", "freed 3 GB"]


async def test_a_clear_follows_its_raise_even_when_the_raise_is_retried(
        service: FloorService, cfg: Config, clock: ManualClock) -> None:
    ch = ScriptedChannel([TransientError("down"), TransientError("down")])
    async with running(notifier(cfg, service, clock, channels=[ch])):
        await raise_(service, clock)
        await clear(service)
        await until(lambda: statuses(service) == ["delivered", "delivered"], "both")
    assert [n.state for n in ch.sent] == ["raised", "cleared"]


async def test_shutdown_waits_for_the_send_under_way_and_starts_no_other(
        service: FloorService, cfg: Config, clock: ManualClock) -> None:
    ch = ScriptedChannel()
    ch.gate = asyncio.Event()
    n = notifier(cfg, service, clock, channels=[ch])
    task = asyncio.create_task(n.run(), name="test-alarm-notifier")
    try:
        await n.wait_ready()
        await raise_(service, clock)
        await raise_(service, clock, "db_integrity")
        await asyncio.wait_for(ch.entered.wait(), 30)
        stopping = asyncio.create_task(n.shutdown(), name="test-shutdown")
        for _ in range(5):
            await asyncio.sleep(0)
        assert not stopping.done()  # the send cannot have finished: its gate is shut
        ch.gate.set()
        await asyncio.wait_for(stopping, 30)
        assert statuses(service) == ["delivered", "pending"]
        assert len(ch.sent) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_with_every_channel_removed_pending_deliveries_are_given_up(
        tmp_path: Path, clock: ManualClock) -> None:
    """Turning the channels off gives up what is pending and records nothing new."""
    down = await HttpReceiver().start()
    await down.stop()
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[down.url]))
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["pending"], "pending")
    off = make_config(tmp_path)
    async with gateway(off, clock) as service, running(AlarmNotifier(off, service, clock, retry=FAST)):
        assert statuses(service) == ["failed"]
        await raise_(service, clock, "db_integrity")
    assert [d["alarm_id"] for d in docs(service)] == ["storage_full"]


async def test_shutdown_gives_up_waiting_and_leaves_the_send_pending(
        service: FloorService, cfg: Config, clock: ManualClock) -> None:
    ch = ScriptedChannel()
    ch.gate = asyncio.Event()  # never opened: a receiver that hangs
    n = notifier(cfg, service, clock, channels=[ch], shutdown_wait_s=0.05)
    async with running(n):
        await raise_(service, clock)
        await asyncio.wait_for(ch.entered.wait(), 30)
        await asyncio.wait_for(n.shutdown(), 30)  # returns although the send is still under way
    assert statuses(service) == ["pending"] and ch.sent == []


def test_the_notifier_is_a_part(service: FloorService, cfg: Config, clock: ManualClock) -> None:
    part: Part = AlarmNotifier(cfg, service, clock)  # mypy checks the shape; the name is what logs show
    assert part.name == "alarm-notifier"
