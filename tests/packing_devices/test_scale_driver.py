"""The serial scale driver against the scale simulator, through a real pseudo-terminal.

No timing is asserted: timeouts are generous safety limits, except where a timeout is the behaviour under
test (a silent scale), and there only the outcome is checked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.scale import (
    Backoff,
    ScaleError,
    ScaleOffline,
    ScaleOverload,
    ScaleTimeout,
    ScaleUnderload,
    SerialScale,
)
from simulators.scale import ScaleSimulator
from simulators.scale.sim import StreamFormat
from tests.packing_devices.conftest import StatusLog, make_scale

SAFE = 10.0  # seconds: only a safety limit for reads that must succeed


async def wait_until(cond: Callable[[], object], timeout_s: float = SAFE) -> None:
    """Poll a condition the code under test offers no event for (test helper only)."""
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


# -- MT-SICS request / reply -------------------------------------------------------------------------------


async def test_stable_weight(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.put(1234)
    w = await scale.read_stable(SAFE)
    assert (w.grams, w.stable, w.raw, w.unit) == (1234.0, True, b"S S      1.234 kg", "kg")
    assert sim.commands == ["S"]
    assert scale.last == w


async def test_immediate_weight_may_be_dynamic(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.put(500, unstable_readings=1)
    w = await scale.read_immediate(SAFE)
    assert not w.stable and w.grams != 500.0
    w = await scale.read_immediate(SAFE)
    assert (w.stable, w.grams) == (True, 500.0)
    assert sim.commands == ["SI", "SI"]


async def test_dynamic_then_stable_asks_again_until_settled(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.put(750, unstable_readings=3)  # three `S I` replies (could not settle), then the weight
    w = await scale.read_stable(SAFE)
    assert (w.grams, w.stable) == (750.0, True)
    assert sim.commands == ["S", "S", "S", "S"]


async def test_settling_load_is_answered_when_it_settles(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.put(820, unstable_s=0.2)  # the scale holds its reply to `S` until the load settles
    w = await scale.read_stable(SAFE)
    assert (w.grams, w.stable) == (820.0, True)


async def test_overload_and_underload(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.overload()
    with pytest.raises(ScaleOverload) as over:
        await scale.read_stable(SAFE)
    assert over.value.raw == b"S +"
    sim.underload()
    with pytest.raises(ScaleUnderload):
        await scale.read_immediate(SAFE)
    sim.put(100)
    assert (await scale.read_stable(SAFE)).grams == 100.0


async def test_no_reply_times_out_then_goes_offline_and_back(sim: ScaleSimulator, link: Path,
                                                             status: StatusLog) -> None:
    async with make_scale(link, status, misses_offline=2) as scale:
        sim.silent = True
        with pytest.raises(ScaleTimeout, match="no stable weight"):
            await scale.read_stable(0.2)
        for _ in range(2):
            with pytest.raises(ScaleTimeout, match="did not answer SI"):
                await scale.read_immediate(0.2)
        assert not scale.online and scale.port_open
        assert status.states == [True, False]
        assert "did not answer 2 times" in status.events[-1][1]
        sim.silent = False
        sim.put(42)
        assert (await scale.read_stable(SAFE)).grams == 42.0
        assert scale.online
        assert status.states == [True, False, True]


async def test_timeout_while_the_load_keeps_moving_says_so(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.put(300, unstable_readings=1_000_000)
    with pytest.raises(ScaleTimeout, match="could not settle") as info:
        await scale.read_stable(0.3)
    assert info.value.raw == b"S I"
    assert scale.online  # a moving load is not a dead scale


async def test_garbage_reply_is_an_error_with_the_raw_bytes(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.put(10)
    sim.garbage_next(b"\x02#?\xff\xfe}\r\n")
    with pytest.raises(ScaleError) as info:
        await scale.read_stable(SAFE)
    assert type(info.value) is ScaleError
    assert info.value.raw == b"\x02#?\xff\xfe}"
    assert (await scale.read_stable(SAFE)).grams == 10.0  # the next reply is fine again


async def test_error_reply_es(sim: ScaleSimulator, scale: SerialScale) -> None:
    assert await scale.command("XYZ", SAFE) == b"ES"
    sim.garbage_next(b"ES\r\n")
    with pytest.raises(ScaleError, match="syntax error"):
        await scale.read_stable(SAFE)
    assert await scale.command("Z", SAFE) == b"Z A"


async def test_a_line_without_terminator_is_cut_as_garbage(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.garbage_next(b"x" * 300)
    with pytest.raises(ScaleError, match="not a weight") as info:
        await scale.read_stable(SAFE)
    assert len(info.value.raw) > 256


async def test_units_are_converted_to_grams(link: Path) -> None:
    for unit, load, expected in [("g", 1234.5, 1234.5), ("kg", 1234.6, 1235.0), ("lb", 453.59237, 453.592),
                                 ("oz", 283.49523125, 283.495)]:
        async with ScaleSimulator(link=link, unit=unit) as sim, make_scale(link) as scale:
            sim.put(load)
            w = await scale.read_stable(SAFE)
            assert (w.unit, w.grams) == (unit, expected), unit


async def test_bad_command_text_is_refused(scale: SerialScale) -> None:
    with pytest.raises(ValueError, match="printable"):
        await scale.command("S\r\nT")


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="sics"):
        SerialScale("/dev/null", mode="stream")  # type: ignore[arg-type]


# -- unplug, replug, late plug ---------------------------------------------------------------------------


async def test_unplug_and_replug_recovers(sim: ScaleSimulator, scale: SerialScale, status: StatusLog) -> None:
    sim.put(1000)
    assert (await scale.read_stable(SAFE)).grams == 1000.0
    sim.unplug()
    await status.wait_for([True, False])
    assert "disconnected" in status.events[-1][1]
    with pytest.raises(ScaleOffline, match="not connected"):
        await scale.read_stable(SAFE)
    sim.replug()
    await status.wait_for([True, False, True])
    sim.put(2000)
    assert (await scale.read_stable(SAFE)).grams == 2000.0
    assert scale.opens == 2


async def test_unplug_fails_the_pending_read_at_once(sim: ScaleSimulator, scale: SerialScale) -> None:
    sim.silent = True
    read = asyncio.create_task(scale.read_stable(SAFE), name="pending-read")
    await wait_until(lambda: sim.commands)
    sim.unplug()
    with pytest.raises(ScaleOffline, match="disconnected"):
        await read


async def test_scale_plugged_in_after_start(link: Path, status: StatusLog) -> None:
    async with make_scale(link, status) as scale:
        assert status.states == [False]
        assert "cannot open" in status.events[0][1]
        with pytest.raises(ScaleOffline):
            await scale.read_immediate(SAFE)
        async with ScaleSimulator(link=link) as sim:
            sim.put(5)
            await status.wait_for([False, True])
            assert (await scale.read_stable(SAFE)).grams == 5.0


async def test_close_stops_reopening(link: Path) -> None:
    scale = make_scale(link)
    await scale.start()
    assert not scale.port_open
    await scale.close()  # the no-task-leak guard checks the reopen task is gone


async def test_a_failing_status_callback_does_not_break_the_driver(sim: ScaleSimulator, link: Path) -> None:
    def bad(online: bool, detail: str) -> None:
        raise RuntimeError("observer bug")

    async with SerialScale(str(link), on_status=bad) as scale:
        sim.put(7)
        assert (await scale.read_stable(SAFE)).grams == 7.0


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(ValueError):
        Backoff(0, 1)


async def test_reopen_backoff_resets_after_a_successful_open(sim: ScaleSimulator, link: Path) -> None:
    backoff = Backoff(0.01, 0.1)
    async with SerialScale(str(link), backoff=backoff) as scale:
        sim.unplug()
        await wait_until(lambda: not scale.port_open)
        await wait_until(lambda: backoff._next > 0.02)  # failed attempts doubled it
        sim.replug()
        await wait_until(lambda: scale.port_open)
        assert backoff.next() == 0.01


# -- continuous output -----------------------------------------------------------------------------------


def streaming(link: Path, fmt: StreamFormat = "comma") -> ScaleSimulator:
    return ScaleSimulator(link=link, mode="continuous", stream_format=fmt, interval_s=0.01)


async def read_task(scale: SerialScale, timeout_s: float = SAFE) -> asyncio.Task[object]:
    """A read that is surely waiting for a line before the test sends one."""
    task: asyncio.Task[object] = asyncio.create_task(scale.read_stable(timeout_s), name="test-read")
    await wait_until(lambda: scale.readers_waiting or task.done())
    return task


@pytest.mark.parametrize("fmt", ["sics", "comma"])
async def test_continuous_dynamic_then_stable(link: Path, fmt: StreamFormat) -> None:
    sim = streaming(link, fmt)
    sim.put(1500, unstable_readings=5)  # before the stream starts, so no line of another load is in flight
    async with sim, make_scale(link, mode="continuous") as scale:
        w = await scale.read_stable(SAFE)
        assert (w.grams, w.stable) == (1500.0, True)
        assert sim.commands == []  # nothing is ever sent to a streaming scale


async def test_continuous_immediate_read_takes_a_moving_weight(link: Path) -> None:
    sim = streaming(link, "sics")
    sim.put(1500, unstable_readings=1_000_000)
    async with sim, make_scale(link, mode="continuous") as scale:
        w = await scale.read_immediate(SAFE)
        assert not w.stable and w.raw.startswith(b"S D")


async def test_continuous_skips_noise(link: Path) -> None:
    sim = streaming(link)
    sim.silent = True
    async with sim, make_scale(link, mode="continuous") as scale:
        read = await read_task(scale)
        sim.send_raw(b"#noise#\r\n\xff\xfe\r\nUS,GS,+000.240kg\r\nST,GS,+000.250kg\r\n")
        w = await read
        assert w.grams == 250.0  # type: ignore[attr-defined]


async def test_continuous_only_noise_is_an_error_with_the_raw_line(link: Path) -> None:
    sim = streaming(link)
    sim.silent = True
    async with sim, make_scale(link, mode="continuous") as scale:
        read = await read_task(scale, 0.3)
        sim.send_raw(b"#noise#\r\n")
        with pytest.raises(ScaleError, match="only unreadable lines") as info:
            await read
        assert info.value.raw == b"#noise#"


async def test_continuous_line_split_across_reads(link: Path) -> None:
    sim = streaming(link)
    sim.silent = True
    async with sim, make_scale(link, mode="continuous") as scale:
        read = await read_task(scale)
        sim.send_raw(b"ST,GS,+00")
        await asyncio.sleep(0.01)
        sim.send_raw(b"1.234kg\r\n")
        assert (await read).grams == 1234.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("state", "error"), [("over", ScaleOverload), ("under", ScaleUnderload)])
async def test_continuous_out_of_range(link: Path, state: str, error: type[ScaleError]) -> None:
    sim = streaming(link)
    sim.overload() if state == "over" else sim.underload()
    async with sim, make_scale(link, mode="continuous") as scale:
        with pytest.raises(error):
            await scale.read_stable(SAFE)


async def test_continuous_silence_times_out_and_goes_offline(link: Path, status: StatusLog) -> None:
    sim = streaming(link)
    sim.silent = True
    async with sim, make_scale(link, status, mode="continuous", misses_offline=1) as scale:
        with pytest.raises(ScaleTimeout, match="no data"):
            await scale.read_stable(0.2)
        assert not scale.online
        assert status.states == [True, False]


async def test_continuous_moving_load_times_out(link: Path) -> None:
    sim = streaming(link)
    sim.put(900, unstable_readings=1_000_000)
    async with sim, make_scale(link, mode="continuous") as scale:
        with pytest.raises(ScaleTimeout, match="still moving"):
            await scale.read_stable(0.3)


async def test_load_settling_slower_than_the_scales_patience(link: Path) -> None:
    async with ScaleSimulator(link=link, settle_timeout_s=0.02) as sim, make_scale(link) as scale:
        sim.put(640, unstable_s=0.2)  # `S I` first (the scale gave up), then the weight once settled
        w = await scale.read_stable(SAFE)
        assert (w.grams, w.stable) == (640.0, True)
        assert len(sim.commands) >= 2


async def test_a_path_that_is_no_serial_port_is_reported(tmp_path: Path, status: StatusLog) -> None:
    not_a_tty = tmp_path / "scale.txt"
    not_a_tty.write_text("S S 1 kg\n")
    async with make_scale(not_a_tty, status) as scale:
        assert not scale.port_open
        assert status.states == [False] and "cannot open" in status.events[0][1]
