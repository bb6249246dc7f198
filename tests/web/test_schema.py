"""schemathesis against the gateway's own OpenAPI schema, with a logged-in supervisor: valid and invalid
requests for every operation; none may end in a 5xx, every refusal is a 4xx whose body carries a message,
and data that breaks the schema is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import SUPERVISOR_PW, gateway, web_config

pytestmark = pytest.mark.timeout(180)
# Left out: logging out would end the run's own session; streams never end by design.
EXCLUDED = ("/api/v1/auth/logout",)
EXAMPLES = 12


def fuzz_operation(op: Any, mode: Any, base: str, cookies: dict[str, str], csrf: str, failures: list[str]) -> int:
    """Run one operation in one generation mode; returns how many requests were made."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import negative_data_rejection

    checks: list[Any] = [not_a_server_error]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)
    calls = 0

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        calls += 1
        r = case.call(base_url=base, cookies=cookies, headers={"X-CSRF-Token": csrf}, timeout=30)
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        try:
            case.validate_response(r, checks=checks)
        except Exception as e:
            failures.append(f"{where}: {r.status_code} {r.text[:300]}: {str(e)[:300]}")
            return
        if r.status_code >= 400:
            try:
                message = r.json()["error"]["message"]
            except Exception:
                message = ""
            if not (400 <= r.status_code < 500 and message):
                failures.append(f"{where}: {r.status_code} without a message: {r.text[:300]}")
    run()
    return calls


def fuzz(base: str, cookies: dict[str, str], csrf: str) -> tuple[int, list[str]]:
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]
        if op.path in EXCLUDED or op.path.endswith("/stream"):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                calls += fuzz_operation(op, mode, base, cookies, csrf, failures)
            except Unsatisfiable:  # nothing can be made invalid (an operation without parameters)
                assert mode is GenerationMode.NEGATIVE, op.path
    return calls, failures


async def test_fuzzing_the_openapi_schema_gives_no_server_error(tmp_path: Path) -> None:
    async with gateway(web_config(tmp_path)) as gate:
        await gate.order("O-1", [(1, "SKU-1", 1)])
        async with httpx.AsyncClient(base_url=gate.base) as c:
            r = await c.post("/api/v1/auth/login", json={"operator_id": "s1", "password": SUPERVISOR_PW})
            cookies = {"fg_session": r.cookies["fg_session"]}
            calls, failures = await asyncio.to_thread(fuzz, gate.base, cookies, r.json()["csrf"])
        assert calls > 300
        assert not failures, "\n".join(failures[:20])
