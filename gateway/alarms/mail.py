"""E-mail over SMTP, one plain-text message per alarm event.

smtplib is blocking, so each send runs in a thread of its own behind this one adapter: a maintained async
client would be a new core dependency for a few messages a day, while smtplib is in the standard library. The
thread is a daemon, and the send waits for it at most `timeout_s` in all: in the default executor
(`asyncio.to_thread`) a server that accepted the connection and never greeted held SIGTERM 28 s (the
interpreter waits for executor threads at exit), past SPEC §5's 10 s. A send given up on, or cancelled, may
still finish in its thread; the delivery then stays pending and goes out again (at least once; the same
Message-ID lets a mail system drop the copy).

Port 465 means implicit TLS (SMTPS); `starttls = true` upgrades a plain connection. The password is read
from `password_file` at start-up and registered with `logs.redact`, and failure reasons are scrubbed
before they are logged or journalled, so a server that echoes it back still cannot leak it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from gateway import __version__
from gateway.alarms.channel import Notice, PermanentError, TransientError
from gateway.clock import Clock
from gateway.config import ConfigError, SmtpConfig, secret_from_file
from gateway.logs import redact, scrub

SMTPS_PORT = 465
CHANNEL_ID = "smtp"

log = logging.getLogger("floorgate.alarms")


async def _in_daemon_thread(fn: Callable[[], dict[str, tuple[int, bytes]]]) -> dict[str, tuple[int, bytes]]:
    """Run a blocking call in a daemon thread: the process never waits for it at exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[dict[str, tuple[int, bytes]]] = loop.create_future()

    def settle(result: dict[str, tuple[int, bytes]] | None, error: BaseException | None) -> None:
        if done.done():
            return  # given up on (the deadline, a cancellation)
        if error is not None:
            done.set_exception(error)
        else:
            assert result is not None
            done.set_result(result)

    def run() -> None:
        try:
            result = fn()
        except BaseException as e:  # handed to the waiting task, raised there
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, None, e)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="smtp-send", daemon=True).start()
    return await done


def load_password(cfg: SmtpConfig) -> str:
    """Read the password at start-up, so a missing file stops the gateway with a clear message instead
    of failing every alarm later."""
    try:
        password = secret_from_file(cfg.password_file)
    except OSError as e:
        raise ConfigError(cfg.password_file, "alarms.smtp.password_file",
                          f"cannot be read ({e.strerror}); put the SMTP password in that file (mode 0600) "
                          "or leave password_file empty") from None
    except UnicodeDecodeError:
        raise ConfigError(cfg.password_file, "alarms.smtp.password_file", "expected UTF-8 text") from None
    redact(password)
    return password


def subject(n: Notice) -> str:
    return f"[Floorgate {n.tag}] {n.site}/{n.gateway}: {n.code}"


def body(n: Notice) -> str:
    what = "cleared" if n.state == "cleared" else "raised"
    return (
        f"Alarm {n.code} {what} on {n.site}/{n.gateway}.\n"
        "\n"
        f"{n.message}\n"
        "\n"
        f"Code:      {n.code}\n"
        f"Alarm id:  {n.alarm_id}\n"
        f"Severity:  {n.severity}\n"
        f"State:     {n.state}\n"
        f"Time:      {n.ts} (UTC)\n"
        f"Site:      {n.site}\n"
        f"Gateway:   {n.gateway}\n"
        "\n"
        f"-- \nSent by Floorgate {__version__}. All times are UTC.\n"
    )


def build_message(n: Notice, sender: str, to: list[str], sent_at: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject(n)
    msg["Date"] = format_datetime(sent_at, usegmt=True)
    # The same Message-ID on every retry lets a mail system drop a copy that a lost answer made us resend.
    digest = hashlib.sha256(n.delivery_id.encode()).hexdigest()[:32]
    msg["Message-ID"] = f"<{digest}@{n.gateway}.{n.site}.floorgate>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a gateway
    msg["X-Floorgate-Alarm"] = f"{n.alarm_id}; state={n.state}; severity={n.severity}"
    msg.set_content(body(n))
    return msg


def _reply(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(said.split())}".strip()


class SmtpChannel:
    id = CHANNEL_ID

    def __init__(self, cfg: SmtpConfig, clock: Clock, *, password: str, timeout_s: float = 30.0,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.label = f"smtp ({cfg.host}:{cfg.port})"
        self.timeout_s = timeout_s
        self._password = password
        self._tls = tls_context or ssl.create_default_context()

    @property
    def sends_password_in_clear(self) -> bool:
        return bool(self.cfg.username) and not self.cfg.starttls and self.cfg.port != SMTPS_PORT

    async def send(self, notice: Notice) -> None:
        msg = build_message(notice, self.cfg.sender, list(self.cfg.to), self.clock.now())
        try:
            async with asyncio.timeout(self.timeout_s):
                refused = await _in_daemon_thread(lambda: self._send_blocking(msg))
        except TimeoutError:
            raise TransientError(f"no answer within {self.timeout_s:g} s") from None
        if refused:
            # Delivered to the others: not sent again (they would get it twice), but said, or a mistyped address
            # went without an alarm for good while the log said "delivered".
            said = "; ".join(f"{rcpt}: {_reply(code, text)}" for rcpt, (code, text) in sorted(refused.items()))
            log.warning("alarm mail refused for some recipients; check alarms.smtp.to", extra={"fields": {
                "channel": self.label, "alarm_id": notice.alarm_id, "refused": scrub(said)}})

    async def aclose(self) -> None:
        return None

    def _send_blocking(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        try:
            return self._deliver(msg)
        except smtplib.SMTPAuthenticationError as e:
            raise PermanentError(scrub(f"login refused ({_reply(e.smtp_code, e.smtp_error)}); check "
                                       "alarms.smtp.username and the password in password_file")) from None
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            said = "; ".join(f"{rcpt}: {_reply(code, text)}" for rcpt, (code, text) in e.recipients.items())
            reason = scrub(f"every recipient refused ({said})")
            if all(c >= 500 for c in codes):
                raise PermanentError(reason + "; check alarms.smtp.to") from None
            raise TransientError(reason) from None
        except smtplib.SMTPNotSupportedError as e:
            raise PermanentError(scrub(f"the server does not support this ({e}); check alarms.smtp.starttls "
                                       "and username")) from None
        except smtplib.SMTPConnectError as e:
            raise TransientError(scrub(f"connection refused by the server ({_reply(e.smtp_code, e.smtp_error)})"))\
                from None
        except smtplib.SMTPResponseException as e:
            reason = scrub(_reply(e.smtp_code, e.smtp_error))
            if 500 <= e.smtp_code < 600:
                raise PermanentError(f"the server refused the message ({reason})") from None
            raise TransientError(f"the server deferred the message ({reason})") from None
        except smtplib.SMTPException as e:
            raise TransientError(scrub(f"{type(e).__name__}: {e}")) from None
        except ssl.SSLError as e:
            raise TransientError(scrub(f"TLS failed ({e.reason or e}); check the server's certificate"))\
                from None
        except TimeoutError:
            raise TransientError(f"no answer within {self.timeout_s:g} s") from None
        except OSError as e:
            raise TransientError(scrub(f"cannot reach {self.cfg.host}:{self.cfg.port} "
                                       f"({e.strerror or type(e).__name__})")) from None

    def _deliver(self, msg: EmailMessage) -> dict[str, tuple[int, bytes]]:
        """Send; returns the recipients the server refused while it took the others."""
        c = self.cfg
        smtp: smtplib.SMTP
        if c.port == SMTPS_PORT:
            smtp = smtplib.SMTP_SSL(c.host, c.port, timeout=self.timeout_s, context=self._tls)
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=self.timeout_s)
        with smtp:
            smtp.ehlo()
            if c.starttls and c.port != SMTPS_PORT:
                smtp.starttls(context=self._tls)
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, self._password)
            return smtp.send_message(msg)
