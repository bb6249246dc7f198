"""Page actions applied exactly once.

Every scan or button press from a page carries an id the browser made. The answer is stored as a journal
document (kind `web_action`) in the same change as the action's effect, the way a hub command's result is
stored with its effect: a request retried after a Wi-Fi drop gets the first answer back and changes
nothing, even across a gateway restart. A retry that arrives while the first is still committing waits
for it. The same id with a different request (another route or body) is refused as a conflict rather than
answered with the other action's result. Answers older than a day are pruned as new ones come in.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from gateway.clock import rfc3339
from gateway.domain.change import Change
from gateway.domain.errors import Conflict
from gateway.domain.floor import Floor
from gateway.service import FloorService

KIND = "web_action"
ACTION_ID = r"^[A-Za-z0-9_-]{8,64}$"
KEEP_S = 24 * 3600
PRUNE_OVER = 2000  # prune when more answers than this are kept
HARD_CAP = 20_000


@dataclass(slots=True)
class WebAction:
    key: str
    operator_id: str
    ts: str
    request: str  # fingerprint of route and body
    answer: dict[str, Any]

    def to_doc(self) -> dict[str, Any]:
        return {"key": self.key, "operator_id": self.operator_id, "ts": self.ts, "request": self.request,
                "answer": self.answer}


def fingerprint(path: str, body: BaseModel) -> str:
    text = path + " " + body.model_dump_json(exclude={"action_id"})
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


Action = Callable[[Floor, Change], dict[str, Any]]


class Actions:
    def __init__(self, service: FloorService) -> None:
        self.service = service
        self._inflight: dict[str, asyncio.Event] = {}
        self.applied = 0
        self.replayed = 0

    async def run(self, operator_id: str, path: str, body: Any, fn: Action) -> tuple[dict[str, Any], bool]:
        """Apply `fn` once for (operator, `body.action_id`); returns its answer and whether it was a replay."""
        action_id: str = body.action_id
        key = f"{operator_id}:{action_id}"
        request = fingerprint(path, body)
        while key in self._inflight:
            await self._inflight[key].wait()
        done = self._inflight[key] = asyncio.Event()
        try:
            answer, replayed = await self.service.execute(self._once(key, operator_id, request, fn))
        finally:
            del self._inflight[key]
            done.set()
        if replayed:
            self.replayed += 1
        else:
            self.applied += 1
        return answer, replayed

    def _once(self, key: str, operator_id: str, request: str, fn: Action
              ) -> Callable[[Floor, Change], tuple[dict[str, Any], bool]]:
        def op(floor: Floor, change: Change) -> tuple[dict[str, Any], bool]:
            kept = floor.extra.setdefault(KIND, {})
            prior = kept.get(key)
            if prior is not None:
                if prior.get("request") != request:
                    raise Conflict(f"action id {key.split(':', 1)[1]} was already used for another action; "
                                   "a new action needs a new id")
                return dict(prior["answer"]), True
            answer = fn(floor, change)
            now = self.service.clock.now()
            action = WebAction(key, operator_id, rfc3339(now), request, answer)
            change.save(KIND, key, action)
            kept[key] = action.to_doc()
            if len(kept) > PRUNE_OVER:
                _prune(kept, change, rfc3339(now - timedelta(seconds=KEEP_S)))
            return answer, False
        return op


def _prune(kept: dict[str, dict[str, Any]], change: Change, older_than: str) -> None:
    old = [k for k, d in kept.items() if str(d.get("ts", "")) < older_than]
    if len(kept) - len(old) > HARD_CAP:
        by_age = sorted(kept.items(), key=lambda kv: str(kv[1].get("ts", "")))
        old = [k for k, _ in by_age[: len(kept) - HARD_CAP // 2]]
    for k in old:
        kept.pop(k, None)
        change.delete(KIND, k)

