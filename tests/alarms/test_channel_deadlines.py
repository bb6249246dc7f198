"""A channel's `timeout_s` bounds a whole send, and a send in flight never holds the process at exit. Found on
running gateways: an SMTP server that accepted and never greeted held SIGTERM 28 s (SPEC §5: 10 s); a webhook
that answered a byte a second held the channel 29 s with timeout_s = 2; a recipient the server refused went
without a word while the log said "delivered"."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.alarms import TransientError
from gateway.alarms.mail import SmtpChannel
from gateway.alarms.webhook import WebhookChannel
from gateway.clock import ManualClock
from gateway.config import SmtpConfig, WebhookConfig
from tests.alarms.conftest import SmtpReceiver
from tests.alarms.test_rules import NOTICE

ROOT = Path(__file__).resolve().parents[2]


async def silent_server() -> tuple[asyncio.Server, list[asyncio.StreamWriter]]:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, says nothing

    return await asyncio.start_server(silent, "127.0.0.1", 0), held


async def test_an_smtp_server_that_never_greets_is_a_transient_timeout() -> None:
    server, held = await silent_server()
    port = server.sockets[0].getsockname()[1]
    ch = SmtpChannel(SmtpConfig(host="127.0.0.1", port=port, to=["ops@example.com"]), ManualClock(), password="",
                     timeout_s=0.3)
    try:
        with pytest.raises(TransientError, match=r"no answer within 0.3 s"):
            await ch.send(NOTICE)
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def test_a_hung_smtp_send_does_not_hold_the_process_at_exit() -> None:
    """The gateway's stop cancels the send under way; the process must then exit, not wait for smtplib's own
    30 s in a thread (the default executor's threads are joined at exit)."""
    script = textwrap.dedent('''
        import asyncio, socket, threading
        from gateway.alarms.mail import SmtpChannel
        from gateway.clock import ManualClock
        from gateway.config import SmtpConfig
        from tests.alarms.test_rules import NOTICE

        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(4)
        held = []
        threading.Thread(target=lambda: held.append(ls.accept()[0]), daemon=True).start()

        async def main():
            ch = SmtpChannel(SmtpConfig(host="127.0.0.1", port=ls.getsockname()[1], to=["ops@example.com"]),
                             ManualClock(), password="", timeout_s=30.0)
            task = asyncio.create_task(ch.send(NOTICE))
            await asyncio.sleep(0.5)
            task.cancel()  # what the gateway's stop does
            try:
                await task
            except asyncio.CancelledError:
                print("cancelled", flush=True)

        asyncio.run(main())
    ''')
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=10)  # SPEC §5's bound for a stop; a held exit took 30 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out.strip() == "cancelled", err


async def test_a_webhook_that_trickles_its_answer_is_cut_at_timeout_s() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n")
        for _ in range(400):  # a byte every 0.05 s: each read well inside the per-read timeout
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ch = WebhookChannel(WebhookConfig(url=f"http://127.0.0.1:{port}/", timeout_s=0.5))
    try:
        with pytest.raises(TransientError, match=r"no answer within 0.5 s"):
            await ch.send(NOTICE)
    finally:
        await ch.aclose()
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_refused_recipient_is_named_in_a_warning(smtp: SmtpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    smtp.refuse_rcpt = "typo"
    ch = SmtpChannel(SmtpConfig(host="127.0.0.1", port=smtp.port, to=["ops@example.com", "typo-lead@example.com"]),
                     ManualClock(), password="", timeout_s=10.0)
    with caplog.at_level(logging.WARNING, logger="floorgate.alarms"):
        await ch.send(NOTICE)  # delivered to ops: not an error, and not sent again
    assert [m.rcpt_tos for m in smtp.mails] == [["ops@example.com"]]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warned and "typo-lead@example.com" in str(getattr(warned[0], "fields", {}))
