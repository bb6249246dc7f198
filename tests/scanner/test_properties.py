"""Property tests: random bytes and random key strokes never crash or hang a reader, and every input ends
as a scan or a clear rejection; interpretation and raw escaping take any text."""

from __future__ import annotations

import asyncio
import itertools
import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.scanner import MAX_SCAN_CHARS, HidScanner, KeyDecoder, LineFramer, RawScan, SerialScanner, key_records
from drivers.scanner.keymaps import LAYOUTS
from gateway.domain.barcode import Barcode, escape_raw, interpret
from simulators.scanner import VirtualHidFifo, VirtualSerialScanner, key_events
from tests.scanner.conftest import Collector, fast_backoff, master_data

SPLIT = {"any": rb"[\r\n]", "cr": rb"\r", "lf": rb"\n", "crlf": rb"\r\n"}
END = {"any": b"\n", "cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}
MD = master_data()
KINDS = {"badge", "location", "order", "carton", "tote", "item", "sscc", "invalid", "unknown"}


def expected_segments(data: bytes, mode: str) -> list[bytes]:
    return [seg for seg in re.split(SPLIT[mode], data) if seg]


def check_scan(scan: RawScan, segment: bytes) -> None:
    if len(segment.decode("utf-8", errors="replace")) > MAX_SCAN_CHARS:
        assert scan.too_long and scan.rejection
    else:
        assert not scan.too_long
        assert (scan.symbology or "").encode() + scan.text.encode("utf-8", errors="replace") == \
            segment.decode("utf-8", errors="replace").encode()
        assert scan.raw == segment


bytes_with_terminators = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from([b"\r", b"\n", b"\r\n", b"]C1", b"\x1d", b"\xff"]),
              st.just(b"Z" * 5000)), max_size=30).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=bytes_with_terminators, mode=st.sampled_from(sorted(SPLIT)), cuts=st.lists(st.integers(0, 10**6)))
def test_framer_turns_any_bytes_into_scans_or_rejections(data: bytes, mode: str, cuts: list[int]) -> None:
    data += END[mode]
    f = LineFramer("s1", mode)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    scans: list[RawScan] = []
    for a, b in itertools.pairwise(points):
        scans += f.feed(data[a:b], 1.0)
    segments = expected_segments(data, mode)
    assert len(scans) == len(segments)
    for scan, seg in zip(scans, segments, strict=True):
        check_scan(scan, seg)


key_event = st.tuples(st.sampled_from([0, 1, 1, 1, 4]), st.integers(0, 130), st.sampled_from([0, 1, 1, 2]))


@settings(max_examples=300, deadline=None)
@given(events=st.lists(key_event, max_size=300), layout=st.sampled_from(sorted(LAYOUTS)),
       sub=st.sampled_from(["", "~", "|"]), cut=st.integers(0, 10**6))
def test_decoder_takes_any_key_strokes(events: list[tuple[int, int, int]], layout: str, sub: str, cut: int) -> None:
    data = key_records([*events, (1, 28, 1)])  # always finish with Enter
    d = KeyDecoder("h1", layout, sub)
    at = cut % (len(data) + 1)
    scans = d.feed(data[:at], 1.0) + d.feed(data[at:], 1.0)
    for s in scans:
        assert s.too_long or all(ch == "\x1d" or (ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F) for ch in s.text)
        assert s.length >= len(s.text)
        assert isinstance(interpret(s.text, symbology=s.symbology, md=MD), Barcode)


def typeable(layout: str) -> st.SearchStrategy[str]:
    chars = sorted({c for entry in LAYOUTS[layout].keys.values() for c in entry if c} | {"\x1d"})
    return st.text(st.sampled_from(chars), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), layout=st.sampled_from(sorted(LAYOUTS)))
def test_what_the_simulator_types_decodes_to_the_same_text(data: st.DataObject, layout: str) -> None:
    text = data.draw(typeable(layout))
    [scan] = KeyDecoder("h1", layout).feed(key_records(key_events(text, layout)), 1.0)
    assert (scan.symbology or "") + scan.text == text


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=80), symbology=st.sampled_from([None, "]C1", "]d2", "]Q3", "]e0", "]E0", "]I1"]))
def test_interpretation_takes_any_text(text: str, symbology: str | None) -> None:
    b = interpret(text, symbology=symbology, md=MD, open_orders={"O-1"}, totes={"TOTE-1": "O-1"})
    assert b.kind in KINDS
    assert (b.error is not None) == (b.kind in ("invalid", "unknown"))
    if b.error:
        assert b.reason
    if b.gtin is not None:
        assert len(b.gtin) == 14 and b.gtin.isdigit()


@settings(max_examples=300, deadline=None)
@given(digits=st.text("0123456789", min_size=1, max_size=30))
def test_interpretation_of_digit_strings(digits: str) -> None:
    b = interpret(digits)
    assert b.kind in ("item", "sscc", "invalid", "unknown", "tote")


@settings(max_examples=500, deadline=None)
@given(raw=st.one_of(st.binary(max_size=60), st.text(max_size=60)))
def test_escape_raw_is_printable_and_reversible(raw: bytes | str) -> None:
    out = escape_raw(raw)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", out)
    back = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), out.encode("utf-8"))
    assert back == (raw if isinstance(raw, bytes) else raw.encode("utf-8", errors="surrogatepass"))


# --- the same through a real pty and a real pipe -----------------------------------------------------------

async def _through_pty(chunks: list[bytes], mode: str) -> tuple[list[RawScan], list[bytes]]:
    with tempfile.TemporaryDirectory() as d:
        c = Collector()
        with VirtualSerialScanner(Path(d) / "p") as sim:
            r = SerialScanner("s1", sim.path, c.on_scan, c.on_status, terminator=mode, backoff=fast_backoff())
            await r.start()
            try:
                await c.status(True)
                data = b"".join(chunks) + END[mode]
                for chunk in [*chunks, END[mode]]:
                    await sim.send(chunk)
                segments = expected_segments(data, mode)
                return [await c.scan() for _ in segments], segments
            finally:
                await r.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(bytes_with_terminators, max_size=4), mode=st.sampled_from(sorted(SPLIT)))
def test_random_bytes_through_a_pty(chunks: list[bytes], mode: str) -> None:
    scans, segments = asyncio.run(_through_pty(chunks, mode))
    for scan, seg in zip(scans, segments, strict=True):
        check_scan(scan, seg)


async def _through_pipe(events: list[tuple[int, int, int]], layout: str) -> int:
    with tempfile.TemporaryDirectory() as d:
        c = Collector()
        with VirtualHidFifo(Path(d) / "e", layout=layout) as sim:
            r = HidScanner("h1", str(sim.path), c.on_scan, c.on_status, layout=layout, backoff=fast_backoff())
            await r.start()
            try:
                await c.status(True)
                data = key_records(events)
                expected = KeyDecoder("ref", layout).feed(data, 0.0)
                await sim.send(data)
                got = [await c.scan() for _ in expected]
                assert [(s.text, s.too_long) for s in got] == [(s.text, s.too_long) for s in expected]
                return len(got)
            finally:
                await r.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(key_event, max_size=200), layout=st.sampled_from(sorted(LAYOUTS)))
def test_random_key_strokes_through_a_pipe(events: list[tuple[int, int, int]], layout: str) -> None:
    asyncio.run(_through_pipe([*events, (1, 28, 1)], layout))
