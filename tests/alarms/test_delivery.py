"""Alarms reach people: real HTTP and SMTP receivers on loopback, a real journal on a tmp SQLite file."""

from __future__ import annotations

import io
import logging
import shutil
import ssl
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.alarms.webhook import channel_id
from gateway.clock import ManualClock
from gateway.config import Config
from gateway.logs import JsonFormatter
from gateway.service import FloorService
from tests.alarms.conftest import (
    SMTP_PASSWORD,
    HttpReceiver,
    SmtpReceiver,
    alarms_config,
    attempts,
    clear,
    docs,
    gateway,
    notifier,
    raise_,
    running,
    self_signed,
    statuses,
    until,
)
from tests.conftest import make_config

WRONG_PASSWORD = "Wr0ng-Guess-4242"


async def test_raised_and_cleared_reach_each_channel_once(
        tmp_path: Path, clock: ManualClock, http: HttpReceiver, smtp: SmtpReceiver, password_file: Path) -> None:
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url], smtp_port=smtp.port,
                                                     password_file=password_file))
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["delivered", "delivered"], "raise delivered to both")
        clock.advance(90)
        await clear(service)
        await until(lambda: statuses(service) == ["delivered"] * 4, "clear delivered to both")
        ids = [d["id"] for d in docs(service) if d["channel"] != "smtp"]

    assert len(http.requests) == 2
    raised, cleared = (r.json() for r in http.requests)
    assert raised == {"site": "dc1", "gateway": "zone-a", "alarm_id": "storage_full", "code": "storage_full",
                      "severity": "critical", "message": "storage full (2048 MB of 2048 MB)", "state": "raised",
                      "ts": "2026-11-23T08:00:00.000Z",
                      "text": "[critical] dc1/zone-a storage_full: storage full (2048 MB of 2048 MB)"}
    assert cleared["state"] == "cleared"
    assert cleared["ts"] == "2026-11-23T08:01:30.000Z"
    assert cleared["message"] == "cleared: storage full (2048 MB of 2048 MB)"
    assert cleared["text"].startswith("[critical, cleared] dc1/zone-a storage_full: cleared: ")
    req = http.requests[0]
    assert req.method == "POST" and req.path == "/hook?access_token=tok-0123456789abcdef"
    assert req.headers["content-type"] == "application/json"
    assert [r.headers["idempotency-key"] for r in http.requests] == ids  # lets a receiver drop a resent copy

    assert len(smtp.mails) == 2
    m = smtp.mails[0]
    assert m.authenticated
    assert m.mail_from == "gw@example.test" and m.rcpt_tos == ["ops@example.test", "lead@example.test"]
    assert m.message["Subject"] == "[Floorgate critical] dc1/zone-a: storage_full"
    assert m.message["Auto-Submitted"] == "auto-generated"
    assert m.message["Date"].datetime.utcoffset() == timedelta(0)
    text = m.message.get_content()
    assert "storage full (2048 MB of 2048 MB)" in text
    assert "Time:      2026-11-23T08:00:00.000Z (UTC)" in text
    assert smtp.mails[1].message["Subject"] == "[Floorgate critical, cleared] dc1/zone-a: storage_full"
    assert "State:     cleared" in smtp.mails[1].message.get_content()

    async with gateway(cfg, clock) as service:  # the outcome is in the journal, not only in memory
        assert statuses(service) == ["delivered"] * 4
        assert {d["channel"] for d in docs(service)} == {channel_id(http.url), "smtp"}
        assert all(d["attempts"] == 1 for d in docs(service))


@pytest.mark.parametrize("channel", ["webhook", "smtp"])
async def test_receiver_down_is_retried_and_delivered_once_when_back(
        tmp_path: Path, clock: ManualClock, channel: str) -> None:
    http, smtp = await HttpReceiver().start(), await SmtpReceiver().start()
    await http.stop()
    await smtp.stop()  # both ports are known and now refuse connections
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]) if channel == "webhook"
                      else alarms_config(smtp_port=smtp.port))
    try:
        async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
            await raise_(service, clock)
            await until(lambda: attempts(service) >= 3, "several failed attempts")
            assert statuses(service) == ["pending"]
            assert "error" in docs(service)[0]
            await (http.start() if channel == "webhook" else smtp.start())
            await until(lambda: statuses(service) == ["delivered"], "delivered once the receiver is back")
            assert "error" not in docs(service)[0]
        assert len(http.requests) + len(smtp.mails) == 1
    finally:
        await http.stop()
        await smtp.stop()


async def test_http_400_fails_for_good_without_retries(
        tmp_path: Path, clock: ManualClock, http: HttpReceiver) -> None:
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]))
    http.statuses = [400]
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["failed"], "failed")
        failed = docs(service)[0]
        assert failed["attempts"] == 1
        assert failed["error"].startswith('HTTP 400: {"error":"unknown field \\"site\\""}')
        # A later alarm goes out on the same channel, which sends in order: had the refused one been
        # retried, the receiver would have seen it again before this one.
        await raise_(service, clock, "db_integrity", "critical", "database quick_check failed")
        await until(lambda: statuses(service) == ["failed", "delivered"], "next alarm delivered")
    assert [r.json()["alarm_id"] for r in http.requests] == ["storage_full", "db_integrity"]


async def test_busy_receiver_408_429_5xx_is_retried(tmp_path: Path, clock: ManualClock, http: HttpReceiver) -> None:
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]))
    http.statuses = [503, 429, 408, 500]
    http.headers = {"Retry-After": "0"}
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["delivered"], "delivered after the receiver stopped refusing")
        assert docs(service)[0]["attempts"] == 5
    assert [r.status for r in http.requests] == [503, 429, 408, 500, 200]


async def test_pending_delivery_survives_a_restart_and_goes_out_once(
        tmp_path: Path, clock: ManualClock) -> None:
    http = await HttpReceiver().start()
    await http.stop()
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]))
    try:
        async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
            await raise_(service, clock)  # the uplink is down
            await until(lambda: attempts(service) >= 1, "a failed attempt")
        assert http.requests == []

        await http.start()
        async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
            await until(lambda: statuses(service) == ["delivered"], "delivered after the restart")
        assert len(http.requests) == 1

        async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
            assert statuses(service) == ["delivered"]  # nothing left to send, nothing recorded anew
        assert len(http.requests) == 1
    finally:
        await http.stop()


async def test_alarm_committed_while_no_notifier_ran_is_told_after_restart(
        tmp_path: Path, clock: ManualClock, http: HttpReceiver) -> None:
    """The crash window between an alarm's commit and its deliveries' commit: closed at start-up."""
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]))
    async with gateway(cfg, clock) as service:
        await raise_(service, clock)  # committed; the process dies before any delivery is recorded
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await until(lambda: statuses(service) == ["delivered"], "the raise delivered")
    async with gateway(cfg, clock) as service:
        clock.advance(60)
        await clear(service)  # again nobody listening
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await until(lambda: statuses(service) == ["delivered", "delivered"], "the clear delivered")
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        assert len(docs(service)) == 2
    assert [(r.json()["state"], r.json()["message"]) for r in http.requests] == [
        ("raised", "storage full (2048 MB of 2048 MB)"), ("cleared", "cleared: storage full (2048 MB of 2048 MB)")]


async def test_message_updates_are_not_resent_but_severity_changes_are(
        tmp_path: Path, clock: ManualClock, http: HttpReceiver) -> None:
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]))
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await raise_(service, clock, "storage_near_full", "warning", "storage at 80%")
        clock.advance(5)
        await raise_(service, clock, "storage_near_full", "warning", "storage at 81%")
        clock.advance(5)
        await raise_(service, clock, "storage_near_full", "critical", "storage at 99%")
        await clear(service, "storage_near_full")
        clock.advance(5)
        await raise_(service, clock, "storage_near_full", "warning", "storage at 80%")
        await until(lambda: statuses(service) == ["delivered"] * 4, "four notices")
    assert [(r.json()["state"], r.json()["severity"], r.json()["message"]) for r in http.requests] == [
        ("raised", "warning", "storage at 80%"), ("raised", "critical", "storage at 99%"),
        ("cleared", "critical", "cleared: storage at 99%"), ("raised", "warning", "storage at 80%")]


async def test_new_channel_learns_current_alarms_and_removed_channel_is_given_up(
        tmp_path: Path, clock: ManualClock, http: HttpReceiver) -> None:
    gone = await HttpReceiver().start()
    await gone.stop()
    first = make_config(tmp_path, alarms=alarms_config(webhooks=[gone.url]))
    async with gateway(first, clock) as service, running(notifier(first, service, clock)):
        await raise_(service, clock)
        await until(lambda: attempts(service) >= 1, "an attempt")
    second = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url]))
    async with gateway(second, clock) as service, running(notifier(second, service, clock)):
        await until(lambda: statuses(service) == ["failed", "delivered"], "old given up, new told")
        assert docs(service)[0]["error"] == "channel no longer configured"
    assert [r.json()["alarm_id"] for r in http.requests] == ["storage_full"]


async def test_deliveries_are_deleted_after_the_retention(
        tmp_path: Path, clock: ManualClock, http: HttpReceiver) -> None:
    down = await HttpReceiver().start()
    await down.stop()
    cfg = make_config(tmp_path, alarms=alarms_config(webhooks=[http.url, down.url]))
    async with gateway(cfg, clock) as service:
        n = notifier(cfg, service, clock)
        async with running(n):
            await raise_(service, clock, "db_integrity")
            await raise_(service, clock)
            clock.advance(60)
            await clear(service)
            await until(lambda: statuses(service).count("delivered") == 3, "delivered to the live hook")
            assert await n.prune() == (0, 0)
        # Stopped, so no send is under way (one under way is never pruned under its worker's feet).
        clock.advance(8 * 86400)
        assert await n.prune() == (2, 3)  # raise+clear of the cleared alarm deleted; 3 stuck ones given up
        left = docs(service)
        # The still-up alarm's raise is kept whatever its age, so a restart does not tell it again.
        assert sorted((d["alarm_id"], d["state"], d["status"]) for d in left) == [
            ("db_integrity", "raised", "delivered"), ("db_integrity", "raised", "failed"),
            ("storage_full", "cleared", "failed"), ("storage_full", "raised", "failed")]
        assert all(d["error"].startswith("not delivered within 7 days") for d in left if d["status"] == "failed")
        clock.advance(8 * 86400)
        assert await n.prune() == (2, 0)
    async with gateway(cfg, clock) as service:
        assert [d["alarm_id"] for d in docs(service)] == ["db_integrity", "db_integrity"]


def _database_bytes(data_dir: Path) -> bytes:
    """The SQLite file and its WAL as raw bytes: a secret must not be anywhere in them."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("floorgate.db*")))


async def test_smtp_password_never_reaches_logs_or_journal(
        tmp_path: Path, clock: ManualClock, password_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    smtp = await SmtpReceiver(echo_password_on_failure=True).start()
    wrong = tmp_path / "wrong.pw"
    wrong.write_text(WRONG_PASSWORD, encoding="utf-8")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    caplog.set_level(logging.DEBUG)
    try:
        bad = make_config(tmp_path, alarms=alarms_config(smtp_port=smtp.port, password_file=wrong))
        async with gateway(bad, clock) as service, running(notifier(bad, service, clock)):
            await raise_(service, clock)
            await until(lambda: statuses(service) == ["failed"], "login refused: failed for good")
            assert docs(service)[0]["error"].startswith("login refused (535 5.7.8 bad password *** for floorgate)")
        good = make_config(tmp_path, alarms=alarms_config(smtp_port=smtp.port, password_file=password_file))
        async with gateway(good, clock) as service, running(notifier(good, service, clock)):
            await raise_(service, clock, "db_integrity")
            await until(lambda: statuses(service)[-1] == "delivered", "delivered with the right password")
    finally:
        root.removeHandler(handler)
        await smtp.stop()
    assert len(smtp.mails) == 1 and smtp.mails[0].authenticated
    secrets = (SMTP_PASSWORD, WRONG_PASSWORD)
    formatted = out.getvalue()
    assert "login refused" in formatted
    assert not any(s in formatted for s in secrets)
    ours = [r.getMessage() + repr(getattr(r, "fields", "")) for r in caplog.records if r.name.startswith("floorgate")]
    assert ours and not any(s in line for line in ours for s in secrets)
    db = _database_bytes(Path(bad.data_dir))
    assert not any(s.encode() in db for s in secrets)


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test cert")


async def test_a_sender_and_recipients_with_display_names(tmp_path: Path, clock: ManualClock, smtp: SmtpReceiver
                                                           ) -> None:
    """`Floorgate <gw@...>` is how a mail names its sender; the config refused it (a bare address only)."""
    cfg = make_config(tmp_path, alarms=alarms_config(smtp_port=smtp.port, sender="Floorgate zone A <gw@example.test>",
                                                     to=['"Ops, night shift" <ops@example.test>']))
    async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
        await raise_(service, clock)
        await until(lambda: statuses(service) == ["delivered"], "delivered")
    m = smtp.mails[0]
    assert m.mail_from == "gw@example.test" and m.rcpt_tos == ["ops@example.test"]
    assert m.message["From"] == "Floorgate zone A <gw@example.test>"
    assert m.message["To"] == '"Ops, night shift" <ops@example.test>'


@needs_openssl
async def test_smtp_starttls(tmp_path: Path, clock: ManualClock, password_file: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    smtp = await SmtpReceiver(tls_context=server_ctx, require_starttls=True).start()
    cfg = make_config(tmp_path, alarms=alarms_config(smtp_port=smtp.port, password_file=password_file,
                                                     starttls=True))
    try:
        async with gateway(cfg, clock) as service, \
                running(notifier(cfg, service, clock, tls_context=ssl.create_default_context(cafile=cert))):
            await raise_(service, clock)
            await until(lambda: statuses(service) == ["delivered"], "delivered over STARTTLS")
    finally:
        await smtp.stop()
    assert len(smtp.mails) == 1 and smtp.mails[0].tls and smtp.mails[0].authenticated


@needs_openssl
async def test_starttls_with_an_untrusted_certificate_is_retried_not_sent_in_clear(
        tmp_path: Path, clock: ManualClock, password_file: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    smtp = await SmtpReceiver(tls_context=server_ctx, require_starttls=True).start()
    cfg = make_config(tmp_path, alarms=alarms_config(smtp_port=smtp.port, password_file=password_file,
                                                     starttls=True))
    try:
        async with gateway(cfg, clock) as service, running(notifier(cfg, service, clock)):
            await raise_(service, clock)
            await until(lambda: attempts(service) >= 2, "failed attempts")
            assert statuses(service) == ["pending"]
            assert docs(service)[0]["error"].startswith("TLS failed")
    finally:
        await smtp.stop()
    assert smtp.mails == [] and smtp.auth_attempts == 0


async def test_no_channels_records_nothing(service: FloorService, cfg: Config, clock: ManualClock) -> None:
    async with running(notifier(cfg, service, clock)):
        await raise_(service, clock)
        await clear(service)
    assert docs(service) == []
