"""Real receivers for the alarm channels: an HTTP server and an SMTP server (aiosmtpd's protocol) on
loopback ports of this test's own event loop, started and stopped by the test."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.alarms import AlarmNotifier, RetryPolicy
from gateway.alarms.deliveries import KIND
from gateway.clock import ManualClock
from gateway.config import Config
from gateway.domain.alarms import clear_alarm, raise_alarm
from gateway.journal import Journal
from gateway.service import FloorService

FAST = RetryPolicy(base_s=0.005, cap_s=0.05)  # retries within milliseconds; no test asserts a duration
SMTP_USER = "floorgate"
SMTP_PASSWORD = "s3cret-Pa55word-xyz"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """An HTTP/1.1 webhook receiver: answers each request with the next status in `statuses` (then 200)."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Request] = []
        self.statuses: list[int] = []
        self.headers: dict[str, str] = {}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?access_token=tok-0123456789abcdef"

    @property
    def accepted(self) -> list[Request]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def start(self) -> HttpReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = self.statuses.pop(0) if self.statuses else 200
            self.requests.append(Request(method, path, headers, body, status))
            text = b'{"ok":true}' if status < 300 else b'{"error":"unknown field \\"site\\""}'
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(text)}\r\n{extra}Connection: close\r\n\r\n".encode() + text)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    authenticated: bool
    tls: bool


@dataclass
class SmtpReceiver:
    """aiosmtpd's SMTP protocol served from this loop (no controller thread)."""

    echo_password_on_failure: bool = False
    tls_context: ssl.SSLContext | None = None
    require_starttls: bool = False
    port: int = 0
    mails: list[Mail] = field(default_factory=list)
    auth_attempts: int = 0
    refuse_rcpt: str | None = None  # recipients starting with this are refused (550), the others taken
    _server: asyncio.Server | None = None

    async def start(self) -> SmtpReceiver:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(self, hostname="mail.test", auth_require_tls=False, authenticator=self._auth,
                        tls_context=self.tls_context, require_starttls=self.require_starttls, loop=loop)

        self._server = await loop.create_server(factory, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _auth(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:
        self.auth_attempts += 1
        assert isinstance(auth_data, LoginPassword)
        if auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode():
            return AuthResult(success=True)
        if self.echo_password_on_failure:  # a careless server that repeats what it was given
            pw = auth_data.password.decode()
            return AuthResult(success=False, handled=False, message=f"535 5.7.8 bad password {pw} for {SMTP_USER}")
        return AuthResult(success=False)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_rcpt is not None and address.startswith(self.refuse_rcpt):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), msg,
                               bool(session.authenticated), session.ssl is not None))
        return "250 OK"


@pytest.fixture
async def http() -> AsyncIterator[HttpReceiver]:
    r = await HttpReceiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpReceiver]:
    r = await SmtpReceiver().start()
    yield r
    await r.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    p = tmp_path / "smtp.pw"
    p.write_text(SMTP_PASSWORD + "\n", encoding="utf-8")
    p.chmod(0o600)
    return p


def alarms_config(*, webhooks: Sequence[str] = (), smtp_port: int | None = None,
                  password_file: Path | None = None, **smtp: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"webhooks": [{"url": u, "timeout_s": 5} for u in webhooks]}
    if smtp_port is not None:
        s: dict[str, Any] = {"host": "127.0.0.1", "port": smtp_port, "to": ["ops@example.test", "lead@example.test"],
                             "sender": "gw@example.test", **smtp}
        if password_file is not None:
            s["username"] = SMTP_USER
            s["password_file"] = str(password_file)
        out["smtp"] = s
    return out


def notifier(cfg: Config, service: FloorService, clock: ManualClock, **kw: Any) -> AlarmNotifier:
    kw.setdefault("retry", FAST)
    return AlarmNotifier(cfg, service, clock, **kw)


@contextlib.asynccontextmanager
async def running(n: AlarmNotifier) -> AsyncIterator[AlarmNotifier]:
    task = asyncio.create_task(n.run(), name="test-alarm-notifier")
    try:
        await asyncio.wait_for(n.wait_ready(), 30)
        yield n
    finally:
        await asyncio.wait_for(n.shutdown(), 30)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def gateway(cfg: Config, clock: ManualClock) -> AsyncIterator[FloorService]:
    """A journal and a service on `cfg`'s SQLite file, closed on exit: one run of the gateway."""
    j = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    try:
        s = FloorService(cfg, j, clock)
        await s.start()
        yield s
    finally:
        await j.close()


async def until(pred: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Wait for a condition; the limit is only a safety net against a hang."""
    async with asyncio.timeout(limit_s):
        while not pred():
            await asyncio.sleep(0.005)
    assert pred(), what


def docs(service: FloorService) -> list[dict[str, Any]]:
    return sorted(service.floor.extra.get(KIND, {}).values(), key=lambda d: (d["n"], d["id"]))


def attempts(service: FloorService) -> int:
    """Attempts on the first delivery (0 until it is recorded)."""
    ds = docs(service)
    return int(ds[0]["attempts"]) if ds else 0


def statuses(service: FloorService) -> list[str]:
    return [d["status"] for d in docs(service)]


def raise_(service: FloorService, clock: ManualClock, alarm_id: str = "storage_full", severity: str = "critical",
           message: str = "storage full (2048 MB of 2048 MB)") -> Awaitable[bool]:
    return service.execute(lambda f, c: raise_alarm(f, c, alarm_id, alarm_id, severity, message, clock.now()))


def clear(service: FloorService, alarm_id: str = "storage_full") -> Awaitable[bool]:
    return service.execute(lambda f, c: clear_alarm(f, c, alarm_id))


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made by the openssl command (no Python crypto package needed)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    return cert, key
