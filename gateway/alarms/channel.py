"""What every outbound alarm channel shares: the notice it sends, its typed failures and the retry timing.

A channel says only whether a failure is worth retrying (`TransientError`) or not (`PermanentError`);
the notifier owns the retries, so a webhook and a mail server are treated alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.alarms.deliveries import CLEARED, Delivery


@dataclass(frozen=True, slots=True)
class Notice:
    """One alarm event as a person should read it, whatever the channel."""

    site: str
    gateway: str
    alarm_id: str
    code: str
    severity: str
    message: str
    state: str  # "raised" | "cleared"
    ts: str
    delivery_id: str

    @classmethod
    def of(cls, d: Delivery, site: str, gateway: str) -> Notice:
        return cls(site, gateway, d.alarm_id, d.code, d.severity, d.message, d.state, d.ts, d.id)

    @property
    def tag(self) -> str:
        return f"{self.severity}, cleared" if self.state == CLEARED else self.severity

    @property
    def text(self) -> str:
        """The one line a chat room shows: `[critical] dc1/zone-a storage_full: ...`."""
        return f"[{self.tag}] {self.site}/{self.gateway} {self.code}: {self.message}"

    def payload(self) -> dict[str, Any]:
        return {"site": self.site, "gateway": self.gateway, "alarm_id": self.alarm_id, "code": self.code,
                "severity": self.severity, "message": self.message, "state": self.state, "ts": self.ts,
                "text": self.text}


class DeliveryError(Exception):
    """A notice did not reach its channel."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(DeliveryError):
    """Worth trying again later: the receiver is down, slow or busy. `retry_after_s` is its own hint."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class PermanentError(DeliveryError):
    """Trying again cannot help (refused credentials, a rejected request): a person must fix something."""


class Channel(Protocol):
    id: str  # stable across restarts and config reordering; part of every delivery id
    label: str  # for logs: never a secret (a webhook URL often carries its token)

    async def send(self, notice: Notice) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 60.0
    jitter: float = 0.5  # each delay is drawn from [delay * (1 - jitter), delay]
    max_retry_after_s: float = 3600.0  # the most a receiver's Retry-After may hold us back


class Backoff:
    """Exponential backoff with a cap and jitter, reset by a success.

    The jitter keeps several gateways of one site from retrying a shared chat server in lockstep after
    it comes back.
    """

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng or random.Random()

    def next(self, retry_after_s: float | None = None) -> float:
        p = self.policy
        delay = min(p.cap_s, p.base_s * 2.0 ** min(self.failures, 62))
        self.failures += 1
        delay *= 1.0 - p.jitter * self._rng.random()
        if retry_after_s is not None and retry_after_s > delay:
            delay = min(retry_after_s, p.max_retry_after_s)
        return delay

    def reset(self) -> None:
        self.failures = 0
