"""The journal's hot-path text helpers: event ids, timestamps and compact JSON must stay exactly what the
contract says while being fast (ids pooled, timestamps cached per second, orjson with a json fallback)."""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from gateway import runtime
from gateway.clock import ManualClock, SystemClock, rfc3339
from gateway.ids import uuid7
from gateway.jsontext import dumps

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_uuid7_is_a_version_7_rfc_uuid_unique_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(5000)]  # spans several refills of the random pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        assert UUID7.fullmatch(text), text
        u = uuid.UUID(text)
        assert u.version == 7 and u.variant == uuid.RFC_4122
    stamps = [int(t.replace("-", "")[:12], 16) for t in ids]
    assert stamps == sorted(stamps)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert abs(stamps[-1] - now_ms) < 60_000


def test_threads_taking_ids_at_once_never_get_the_same_one() -> None:
    """The pool is shared without a lock on the way out (list.pop is atomic); refills race on purpose here."""
    out: list[list[str]] = [[] for _ in range(4)]

    def take(mine: list[str]) -> None:
        for _ in range(20_000):  # 100 refills each
            mine.append(uuid7())

    threads = [threading.Thread(target=take, args=(o,)) for o in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for o in out for i in o]
    assert len(set(ids)) == len(ids) == 80_000
    assert all(UUID7.fullmatch(i) for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    uuid7()  # the pool is filled in the parent
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        os.write(w, "\n".join(uuid7()[14:] for _ in range(50)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = set(f.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {uuid7()[14:] for _ in range(50)}
    assert not child & parent


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_rfc3339_matches_isoformat_whatever_came_before(dt: datetime) -> None:
    for d in (dt, dt + timedelta(microseconds=999), dt + timedelta(seconds=1), dt):
        assert rfc3339(d) == d.isoformat(timespec="milliseconds")[:-6] + "Z"


def test_rfc3339_converts_other_offsets_to_utc() -> None:
    dt = datetime(2026, 1, 1, 5, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(dt) == "2026-01-01T03:00:00.999Z"


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text()
                    | st.floats(allow_nan=False, allow_infinity=False),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=20))
def test_dumps_is_compact_utf8_json_that_reads_back_the_same(value: object) -> None:
    text = dumps(value)
    assert json.loads(text) == value
    assert dumps(json.loads(text)) == text  # stable: the same value always gives the same text


def test_dumps_falls_back_for_what_orjson_refuses() -> None:
    assert dumps({"big": 2**70}) == '{"big":1180591620717411303424}'
    assert dumps({1: "a"}) == '{"1":"a"}'
    assert dumps({"name": "Größe ✓"}) == '{"name":"Größe ✓"}'


def test_runtime_settings_are_what_the_gateway_runs_with() -> None:
    import gc
    import sys
    before = (sys.getswitchinterval(), gc.get_threshold())
    try:
        runtime.tune()
        assert sys.getswitchinterval() == runtime.SWITCH_INTERVAL_S
        assert gc.get_threshold()[0] == runtime.GC_YOUNG_THRESHOLD
    finally:
        sys.setswitchinterval(before[0])
        gc.set_threshold(*before[1])


def test_the_system_clocks_stamp_is_its_now_to_the_millisecond_offset_included() -> None:
    clock = SystemClock()
    for offset in (0.0, 3600.0, -7200.5):  # offset_s is moved by fault tests after the clock is made
        clock.offset_s = offset
        for _ in range(2000):  # many calls inside one millisecond (the cache) and across millisecond edges
            before = rfc3339(clock.now())
            stamp = clock.stamp()
            after = rfc3339(clock.now())
            assert before <= stamp <= after, (offset, before, stamp, after)


def test_a_manual_clocks_stamp_is_its_wall_time() -> None:
    clock = ManualClock(datetime(2026, 12, 31, 23, 59, 59, 999500, tzinfo=UTC))
    assert clock.stamp() == "2026-12-31T23:59:59.999Z"
    clock.advance(0.001)
    assert clock.stamp() == "2027-01-01T00:00:00.000Z"
