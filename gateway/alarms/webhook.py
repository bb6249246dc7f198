"""The generic JSON webhook: one POST of application/json per alarm event.

The body carries the alarm's fields and a ready-made `text` line, which is what the incoming webhooks of
common chat tools display. Only 2xx is success. 408, 429 and 5xx mean "try later"; every other answer
(a 400 for a malformed body, a 404 for a deleted hook, a redirect) will not change by itself, so it is a
permanent failure whose reason tells the technician what the receiver said.

httpx (maintained, async, typed) does the HTTP; TLS uses the system's trust store, so a site's own CA
installed on the box is honoured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from urllib.parse import urlsplit

import httpx

from gateway import __version__
from gateway.alarms.channel import Notice, PermanentError, TransientError
from gateway.config import WebhookConfig
from gateway.logs import redact, scrub

MAX_BODY_SNIPPET = 300  # characters of a refusal's body kept in the reason
RETRYABLE_STATUS = frozenset({408, 429})


def channel_id(url: str) -> str:
    """Derived from the URL, so reordering the config does not reroute pending deliveries, yet the id
    (stored in the journal and shown on pages) reveals nothing of a token in the URL."""
    return "webhook-" + hashlib.sha256(url.encode()).hexdigest()[:12]


def _retry_after(value: str | None) -> float | None:
    """Only the delta-seconds form: an HTTP date would tie a timer to the wall clock."""
    if value is None:
        return None
    try:
        s = float(value.strip())
    except ValueError:
        return None
    return s if s >= 0 else None


class WebhookChannel:
    def __init__(self, cfg: WebhookConfig, index: int = 0, *, verify: ssl.SSLContext | bool | None = None) -> None:
        self.url = cfg.url
        self.timeout_s = cfg.timeout_s
        self.id = channel_id(cfg.url)
        host = urlsplit(cfg.url).hostname or "?"
        self.label = f"webhook #{index + 1} ({host})"
        redact(cfg.url)  # chat-bot URLs carry their token: keep them out of every log line
        self._verify: ssl.SSLContext | bool = ssl.create_default_context() if verify is None else verify
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self._verify, follow_redirects=False,
                                             headers={"User-Agent": f"floorgate/{__version__}"})
        return self._client

    async def send(self, notice: Notice) -> None:
        body = json.dumps(notice.payload(), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": notice.delivery_id}
        try:
            # A deadline for the whole exchange: httpx's timeout is per read, so a receiver trickling its answer a
            # byte a second held the channel (and every alarm queued behind it) for 29 s with timeout_s = 2.
            async with asyncio.timeout(self.timeout_s), self._http().stream(
                    "POST", self.url, content=body, headers=headers, timeout=self.timeout_s) as resp:
                snippet = await _read_snippet(resp)
        except (httpx.TimeoutException, TimeoutError):
            raise TransientError(f"no answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise TransientError(scrub(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)) from None
        status = resp.status_code
        if 200 <= status < 300:
            return
        said = f": {snippet}" if snippet else ""
        if status in RETRYABLE_STATUS or 500 <= status < 600:
            raise TransientError(scrub(f"HTTP {status}{said}"), _retry_after(resp.headers.get("retry-after")))
        if 300 <= status < 400:
            raise PermanentError(f"HTTP {status}: the webhook URL redirects; configure the URL it redirects to")
        raise PermanentError(scrub(f"HTTP {status}{said}; check the webhook URL and that the receiver accepts "
                                   "this JSON body"))

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


async def _read_snippet(resp: httpx.Response) -> str:
    """The start of the receiver's answer, for the reason of a refusal; never the whole of a big page."""
    buf = b""
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) >= 4 * MAX_BODY_SNIPPET:
            break
    text = buf.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:MAX_BODY_SNIPPET] + ("..." if len(text) > MAX_BODY_SNIPPET else "")
