"""The PTL driver against the simulator over real Modbus frames: TCP on loopback and RTU through a pty pair.

Every assertion is about behaviour and counts (events, replies served, registers on the node), never
about how long something took; waits have generous safety limits only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from drivers.ptl import (
    BadReply,
    BusNotRunning,
    BusSettings,
    Colour,
    ExceptionReply,
    KeyPress,
    Mode,
    ModuleState,
    NoResponse,
    Pattern,
    PtlBus,
)
from drivers.ptl.link import ModbusLink
from firmware_stubs.ptl_node.modbus_rtu import with_crc
from simulators.ptl import PtlSimulator

from .conftest import LIMIT, Recorder, settings_for, until

JOB = ModuleState.job(12, Colour.BLUE, Pattern.BLINK_1HZ, 4711)


async def shown(bus: PtlBus, unit: int) -> None:
    async with asyncio.timeout(LIMIT):
        await bus.wait_shown(unit)


async def polls_after(bus: PtlBus, unit: int, n: int) -> None:
    """Let the bus poll `unit` n more times: "nothing more happens" is checked by counting polls."""
    target = bus.stats.modules[unit].polls + n
    await until(lambda: bus.stats.modules[unit].polls >= target)


async def test_job_lights_the_right_module_with_quantity_colour_token(sim: PtlSimulator, bus: PtlBus) -> None:
    for u in (1, 2, 4):
        bus.watch(u)
    bus.set_state(3, JOB)
    await shown(bus, 3)
    node = sim.module(3)
    assert (node.mode, node.quantity, node.colour, node.pattern, node.token) == (1, 12, 3, 1, 4711)
    assert node.display_text(sim.now_ms()) == "  12"
    for u in (1, 2, 4):
        await shown(bus, u)
        assert sim.module(u).mode == 0
    assert sim.module(5).boots == 1 and sim.requests[5] == 0  # not watched: never addressed


async def test_press_yields_exactly_one_event(sim: PtlSimulator, bus: PtlBus, rec: Recorder) -> None:
    bus.set_state(2, JOB)
    await shown(bus, 2)
    assert sim.press(2, "confirm")
    await until(lambda: len(rec.keys) == 1)
    await polls_after(bus, 2, 5)
    assert rec.keys == [KeyPress("bus-a", 2, 4711, "confirm", 12, False, 1)]
    assert sim.module(2).status() & 0x3 == 0  # cleared by compare-and-clear


async def test_shortage_with_adjusted_quantity_is_reported_raw(sim: PtlSimulator, bus: PtlBus, rec: Recorder) -> None:
    bus.set_state(2, JOB)
    await shown(bus, 2)
    assert sim.adjust(2, -3)
    sim.module(2).latched = 0  # nothing latched yet; now both keys before the next poll:
    sim.press(2, "confirm")
    sim.press(2, "shortage")
    await until(lambda: len(rec.keys) >= 1)
    await polls_after(bus, 2, 5)
    assert len(rec.keys) == 1  # both presses were read in one poll: one event, shortage wins
    k = rec.keys[0]
    assert (k.kind, k.qty, k.adjusted, k.token) == ("shortage", 9, True, 4711)


async def test_press_while_the_driver_reads_is_neither_lost_nor_doubled(
    sim: PtlSimulator, bus: PtlBus, rec: Recorder
) -> None:
    bus.set_state(4, JOB)
    await shown(bus, 4)
    # First press latched; a second press lands after the node built its reply to the poll that reads the
    # first, before the driver's compare-and-clear. The clear must fail and the second press surface once.
    sim.press(4, "confirm")
    sim.after_read(4, lambda: sim.press(4, "confirm"))
    await until(lambda: len(rec.keys) == 2)
    await polls_after(bus, 4, 5)
    assert [k.counter for k in rec.keys] == [1, 2]
    assert sim.presses[4] == 2
    assert sim.module(4).status() & 0x3 == 0


async def test_press_during_every_read_for_a_while_counts_each_press_once(
    sim: PtlSimulator, bus: PtlBus, rec: Recorder
) -> None:
    bus.set_state(1, JOB)
    await shown(bus, 1)
    for _ in range(10):
        sim.after_read(1, lambda: sim.press(1, "confirm"))
        await polls_after(bus, 1, 1)
    await until(lambda: len(rec.keys) == sim.presses[1])
    await polls_after(bus, 1, 5)
    assert len(rec.keys) == sim.presses[1] == 10
    assert len({k.counter for k in rec.keys}) == 10


async def test_stale_token_is_cleared_and_ignored(sim: PtlSimulator, rec: Recorder) -> None:
    node = sim.module(3)
    node.write_holding(0, [1, 5, 2, 0, 99], sim.now_ms())  # a job left over from before a gateway restart
    assert sim.press(3, "confirm")
    async with PtlBus(settings_for(sim), on_key=rec.keys.append) as bus:
        bus.set_state(3, JOB)
        await shown(bus, 3)
        await until(lambda: node.status() & 0x3 == 0)
        await polls_after(bus, 3, 5)
        assert rec.keys == []
        assert bus.stats.modules[3].stale_keys == 1


async def test_press_latched_under_the_same_token_by_a_previous_bus_is_stale(sim: PtlSimulator, rec: Recorder) -> None:
    """A restarted gateway may hand out the very token the module still has latched from before the
    restart: the press was not made on anything this bus wrote, so it is cleared and never reported; a
    press on the job this bus wrote is reported once."""
    node = sim.module(3)
    async with PtlBus(settings_for(sim)) as before:  # the gateway before the restart
        before.set_state(3, JOB)
        await shown(before, 3)
    assert sim.press(3, "confirm")  # pressed while no gateway was reading it
    assert (node.status() & 0x1, node.token_echo) == (1, JOB.token)
    async with PtlBus(settings_for(sim), on_key=rec.keys.append) as bus:  # after it, the same token again
        bus.set_state(3, JOB)
        await shown(bus, 3)
        await until(lambda: node.status() & 0x3 == 0)
        await polls_after(bus, 3, 5)
        assert rec.keys == []
        assert bus.stats.modules[3].stale_keys == 1
        assert sim.press(3, "confirm")
        await until(lambda: len(rec.keys) == 1)
        await polls_after(bus, 3, 5)
        assert [(k.unit, k.token, k.kind) for k in rec.keys] == [(3, JOB.token, "confirm")]


async def test_vanished_module_goes_offline_others_keep_being_served_and_it_returns_restored(
    sim: PtlSimulator, bus: PtlBus, rec: Recorder
) -> None:
    for u in (1, 2, 3):
        bus.set_state(u, ModuleState.job(u, Colour.GREEN, Pattern.STEADY, 100 + u))
    for u in (1, 2, 3):
        await shown(bus, u)
    sim.set_gone(3)
    before = {u: sim.served[u] for u in (1, 2)}
    await until(lambda: len(rec.offline(3)) == 1)
    # Counted, not timed: while unit 3 was used up by its misses, 1 and 2 kept getting answers.
    assert all(sim.served[u] - before[u] >= 2 for u in (1, 2)), (dict(sim.served), before)
    assert bus.is_online(1) and bus.is_online(2) and bus.is_online(3) is False
    served_while_offline = {u: sim.served[u] for u in (1, 2)}
    await until(lambda: sim.requests[3] >= 8)  # several probes
    assert all(sim.served[u] > served_while_offline[u] for u in (1, 2))
    sim.reboot(3)  # it lost power while away: its light is gone
    assert sim.module(3).mode == 0
    sim.set_gone(3, False)
    await until(lambda: len(rec.online(3)) == 2)
    await shown(bus, 3)
    node = sim.module(3)
    assert (node.mode, node.quantity, node.token) == (1, 3, 103)
    assert rec.offline(1) == rec.offline(2) == []
    assert "misses in a row" in rec.offline(3)[0].detail
    assert bus.stats.misses >= 3 and bus.stats.modules[3].misses >= 3


async def test_exception_replies_are_misses_never_presses(sim: PtlSimulator, bus: PtlBus, rec: Recorder) -> None:
    bus.set_state(2, JOB)
    await shown(bus, 2)
    sim.press(2, "confirm")
    sim.set_exception(2, 4)
    await until(lambda: len(rec.offline(2)) == 1)
    assert rec.keys == []
    assert bus.stats.modules[2].errors >= 3
    sim.set_exception(2, 0)
    await until(lambda: len(rec.keys) == 1)  # the real press was kept by the node and is reported once
    await polls_after(bus, 2, 5)
    assert len(rec.keys) == 1


@pytest.mark.parametrize("transport", ["rtu"])
async def test_crc_errors_and_line_noise_never_become_presses(sim: PtlSimulator, bus: PtlBus, rec: Recorder) -> None:
    for u in (1, 2):
        bus.set_state(u, JOB)
        await shown(bus, u)
    sim.press(2, "confirm")
    sim.set_corrupt(2)
    # A reply that carries a "confirm" for the live token, but with a broken CRC, thrown on the line
    # among the real traffic; and plain random bytes.
    fake = bytearray(with_crc(bytes([1, 4, 8, 0, 1, 0, 12, 0x12, 0x67, 0, 9])))
    fake[-2] ^= 0xFF
    for i in range(40):
        sim.inject_noise(bytes(fake) if i % 2 else os.urandom(13))
        await polls_after(bus, 1, 1)
    assert rec.keys == []
    await until(lambda: len(rec.offline(2)) == 1)
    assert bus.stats.modules[2].errors + bus.stats.modules[2].misses >= 3
    assert sim.served[1] > 10  # unit 1 kept being served through the noise
    sim.set_corrupt(2, False)
    await until(lambda: len(rec.keys) == 1)
    await polls_after(bus, 2, 5)
    assert [(k.unit, k.counter) for k in rec.keys] == [(2, 1)]


@pytest.mark.parametrize("transport", ["rtu"])
async def test_a_garbled_reply_is_told_apart_from_silence(sim: PtlSimulator, bus: PtlBus) -> None:
    """pymodbus drops a frame with a broken CRC in silence, and the request timed out as if nobody answered: a
    technician facing two modules at one address or a bad A/B pair was told the module was silent. It is a
    bad reply now, counted in `errors`, and says what to look for."""
    await until(lambda: bus.link_up)
    sim.set_corrupt(2)
    with pytest.raises(BadReply, match=r"garbled reply \(CRC error\): two modules at this address"):
        await bus.read_status(2)
    with pytest.raises(NoResponse):  # silence is still silence
        await bus.read_status(99)
    bus.watch(2)
    await until(lambda: bus.is_online(2) is False)
    snap = bus.snapshot()["modules"][2]
    assert snap["errors"] >= 3 and "garbled" in snap["last_error"], snap
    sim.set_corrupt(2, False)
    assert (await bus.read_status(2)) is not None


async def test_an_rtu_request_waits_for_its_reply_on_the_wire() -> None:
    """`timeout_ms` is the module's time to answer; on RTU the wire time of the request and the reply is added.
    The identity block's reply (113 bytes) takes 118 ms at 9600 baud: with the default 100 ms it could never
    be read (scan found nothing, set-address refused), while the short polls worked."""
    async with PtlSimulator([1], transport="rtu", baudrate=9600) as sim:
        link = ModbusLink(settings_for(sim, timeout_ms=100))
        await link.connect()
        try:
            await link.read_holding(1, 1000, 54)  # the identity block
            used = link._client.ctx.comm_params.timeout_connect  # type: ignore[union-attr]
            assert used >= 0.100 + 113 * 10 / 9600, used
            await link.read_input(1, 0, 4)  # a poll: little more than timeout_ms
            used = link._client.ctx.comm_params.timeout_connect  # type: ignore[union-attr]
            assert 0.100 < used < 0.130, used
        finally:
            link.close()
    tcp = ModbusLink(BusSettings(id="b", transport="tcp", host="127.0.0.1", port=5020, timeout_ms=100))
    assert tcp._wire_s(8, 113) == 0.0  # no wire time on TCP: the timeout is timeout_ms
    even = ModbusLink(BusSettings(id="b", transport="rtu", port="/dev/null", baudrate=9600, parity="E"))
    assert even._wire_s(8, 113) > link._wire_s(8, 113)  # a parity bit a character


async def test_power_up_bit_restores_the_state(sim: PtlSimulator, bus: PtlBus, rec: Recorder) -> None:
    bus.set_state(4, JOB)
    await shown(bus, 4)
    sim.reboot(4)
    node = sim.module(4)
    assert node.mode == 0 and node.powered_up
    await until(lambda: node.mode == 1 and not node.powered_up)
    assert (node.quantity, node.colour, node.token) == (12, 3, 4711)
    assert bus.stats.modules[4].restores == 1
    assert rec.keys == [] and rec.offline(4) == []


async def test_many_set_state_calls_coalesce_latest_wins(sim: PtlSimulator, bus: PtlBus) -> None:
    bus.set_state(1, JOB)
    await shown(bus, 1)
    writes = bus.stats.modules[1].writes
    for q in range(1, 201):
        bus.set_state(1, ModuleState.job(q, Colour.YELLOW, Pattern.STEADY, 5000 + q))
    await shown(bus, 1)
    assert bus.stats.modules[1].writes == writes + 1
    node = sim.module(1)
    assert (node.quantity, node.colour, node.token) == (200, 4, 5200)


async def test_done_is_written_once_and_not_replayed(sim: PtlSimulator, bus: PtlBus) -> None:
    bus.set_state(5, JOB)
    await shown(bus, 5)
    bus.set_state(5, ModuleState.done())
    await shown(bus, 5)
    assert sim.module(5).mode == 4
    assert bus.module(5).desired == ModuleState.off()  # the module turns itself off; a restore must not replay it
    sim.reboot(5)
    await until(lambda: not sim.module(5).powered_up)
    assert sim.module(5).mode == 0


async def test_technician_identity_commands_and_coils(sim: PtlSimulator, bus: PtlBus) -> None:
    await until(lambda: bus.link_up)
    ident = await bus.read_identity(2)
    assert (ident.model_number, ident.model_name, ident.serial, ident.firmware) == (
        4201, "Floorgate PTL-4D", "SIM-000002", "1.0")
    await bus.identify(2)
    assert sim.module(2).identify_until > 0
    await bus.self_test(3)
    assert sim.module(3).display_text(sim.now_ms()) == "8888"
    await bus.write_coil(2, 1, True)
    assert await bus.read_coils(2) == (False, True)
    comm = await bus.read_comm(2)
    assert (comm.unit_id, comm.baudrate, comm.stopbits) == (2, 115200, 1)
    with pytest.raises(NoResponse):
        await bus.read_identity(99)
    sim.set_exception(3, 2)
    with pytest.raises(ExceptionReply, match="illegal data address") as ei:
        await bus.read_identity(3)
    assert ei.value.exception_code == 2


async def test_set_address_moves_the_module_after_reboot(sim: PtlSimulator, bus: PtlBus) -> None:
    await until(lambda: bus.link_up)
    new = await bus.set_comm(5, unit_id=9)
    assert new.unit_id == 9
    await until(lambda: sim.node_for(9) is not None)
    assert sim.node_for(5) is None
    assert (await bus.read_identity(9)).serial == "SIM-000005"


async def test_bad_input_gets_clear_errors(sim: PtlSimulator, bus: PtlBus) -> None:
    with pytest.raises(ValueError, match="unit id"):
        bus.set_state(0, JOB)
    with pytest.raises(ValueError, match="unit id"):
        bus.watch(248)
    with pytest.raises(TypeError, match="ModuleState"):
        bus.set_state(1, "job")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quantity"):
        ModuleState.job(10000, Colour.GREEN, Pattern.STEADY, 1)
    with pytest.raises(ValueError, match="token"):
        ModuleState.job(1, Colour.GREEN, Pattern.STEADY, 0)
    with pytest.raises(ValueError):
        ModuleState.job(1, 9, Pattern.STEADY, 1)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="not watched"):
        bus.module(77)
    with pytest.raises(ValueError, match="coil"):
        await bus.write_coil(1, 5, True)
    stopped = PtlBus(settings_for(sim, "bus-z"))
    with pytest.raises(BusNotRunning):
        await stopped.read_identity(1)


async def test_stats_snapshot_for_metrics(sim: PtlSimulator, bus: PtlBus) -> None:
    bus.set_state(1, JOB)
    await shown(bus, 1)
    snap = bus.snapshot()
    assert snap["bus"] == "bus-a" and snap["link_up"] is True
    assert snap["transactions"] >= 2 and snap["writes"] >= 1
    m = snap["modules"][1]
    assert m["online"] is True and m["mode"] == "job" and m["in_sync"] is True
    assert m["transactions"] >= 2 and m["last_seen_age_s"] is not None


async def test_a_dead_bus_never_delays_another(rec: Recorder) -> None:
    async with PtlSimulator(range(1, 4)) as dead, PtlSimulator(range(1, 4)) as live:
        for u in (1, 2, 3):
            dead.set_gone(u)
        rec_live = Recorder()
        async with PtlBus(settings_for(dead, "bus-d"), on_health=rec.health.append) as bus_d, \
                PtlBus(settings_for(live, "bus-l"), on_health=rec_live.health.append) as bus_l:
            for u in (1, 2, 3):
                bus_d.set_state(u, JOB)
                bus_l.set_state(u, JOB)
            served_at_start = sum(live.served.values())
            await until(lambda: all(rec.offline(u) for u in (1, 2, 3)))
            assert sum(live.served.values()) - served_at_start >= 20
            assert all(bus_l.is_online(u) for u in (1, 2, 3))
            assert rec_live.offline(1) == []


async def test_tcp_link_loss_marks_modules_offline_and_reconnect_restores(rec: Recorder) -> None:
    first = PtlSimulator(range(1, 3))
    await first.start()
    port = first.port
    async with PtlBus(settings_for(first), on_health=rec.health.append) as bus:
        bus.set_state(1, JOB)
        bus.watch(2)
        await shown(bus, 1)
        await first.stop()
        await until(lambda: len(rec.offline(1)) == 1 and len(rec.offline(2)) == 1)
        assert "link" in rec.offline(1)[0].detail
        assert not bus.link_up
        second = PtlSimulator(range(1, 3), port=port)  # the PTL gateway comes back, its modules powered up
        await second.start()
        try:
            await until(lambda: len(rec.online(1)) == 2)
            await shown(bus, 1)
            assert second.module(1).token == 4711
            assert bus.stats.link_losses == 1 and bus.stats.connects >= 2
        finally:
            await second.stop()


async def test_rtu_adapter_missing_is_a_clear_link_error(rec: Recorder, tmp_path: Path) -> None:
    from drivers.ptl import BusSettings, LinkDown

    settings = BusSettings(id="bus-x", transport="rtu", port=f"{tmp_path}/ttyUSB9", timeout_ms=20,
                           reconnect_min_ms=10, reconnect_max_ms=20)
    link = ModbusLink(settings)
    with pytest.raises(LinkDown, match="ttyUSB9"):
        await link.connect()
    async with PtlBus(settings, on_health=rec.health.append) as bus:
        bus.watch(1)
        await until(lambda: len(rec.offline(1)) == 1)
        assert "ttyUSB9" in rec.offline(1)[0].detail
        assert bus.snapshot()["link_up"] is False


async def test_a_failing_event_handler_does_not_stop_the_bus(sim: PtlSimulator) -> None:
    def boom(_: KeyPress) -> None:
        raise RuntimeError("consumer bug")

    async with PtlBus(settings_for(sim), on_key=boom) as bus:
        bus.set_state(1, JOB)
        await shown(bus, 1)
        sim.press(1)
        await until(lambda: bus.stats.key_events == 1)
        bus.set_state(1, ModuleState.info(3, Colour.CYAN))
        await shown(bus, 1)
        assert sim.module(1).mode == Mode.INFO


async def test_regression_pymodbus_retries_and_disconnect_after_misses_are_off(
    sim: PtlSimulator, bus: PtlBus, rec: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """pymodbus 3.16 defaults: 3 retries per request (a dead module stalls the bus 4 x timeout) and, after
    retries + 3 silent requests, the TCP connection is closed for every module. Both are switched off:
    one request per miss, and the link survives any number of misses. Its per-miss ERROR lines are
    filtered (the bus logs each outage once)."""
    bus.set_state(1, JOB)
    bus.watch(2)
    await shown(bus, 1)
    sim.set_gone(2)
    await until(lambda: len(rec.offline(2)) == 1 and sim.requests[2] >= 8)  # pymodbus would close after 4
    misses = bus.stats.modules[2].misses
    assert sim.served[2] == 0 and misses <= sim.requests[2] <= misses + 1  # + 1: a probe may be on the wire
    assert bus.stats.link_losses == 0 and bus.stats.connects == 1 and bus.link_up
    assert not [r for r in caplog.records if r.name == "pymodbus.logging" and r.levelname == "ERROR"]
    offline_logs = [r for r in caplog.records if r.name == "floorgate.ptl" and "offline" in r.getMessage()]
    assert len(offline_logs) == 1


async def test_slow_replies_within_the_timeout_are_fine_late_ones_are_misses_never_misattributed(
    sim: PtlSimulator, bus: PtlBus, rec: Recorder
) -> None:
    for u in (1, 2, 3):
        bus.set_state(u, ModuleState.job(u, Colour.GREEN, Pattern.STEADY, 10 + u))
    for u in (1, 2, 3):
        await shown(bus, u)
    sim.set_delay(2, 0.01)  # a quarter of the timeout: slow but in time
    await polls_after(bus, 2, 5)
    assert bus.stats.modules[2].misses == 0
    sim.press(2, "confirm")
    sim.set_delay(2, 0.06)  # 1.5 x the timeout: every reply arrives after the driver gave up on it
    await until(lambda: len(rec.offline(2)) == 1)
    # Unit 2's late replies (carrying a latched confirm) went out while the driver waited for other
    # units: none of them was taken for another unit's reply or for a second press.
    assert all(k.unit == 2 for k in rec.keys) and len(rec.keys) <= 1
    assert bus.stats.modules[1].stale_keys == bus.stats.modules[3].stale_keys == 0
    sim.set_delay(2, 0.0)
    await until(lambda: len(rec.online(2)) == 2 and len(rec.keys) == 1)
    await polls_after(bus, 2, 5)
    assert [(k.unit, k.token, k.counter) for k in rec.keys] == [(2, 12, 1)]
    assert sim.module(1).status() & 3 == sim.module(3).status() & 3 == 0


async def test_a_cancellation_lost_inside_a_request_still_ends_the_bus_loop(sim: PtlSimulator) -> None:
    """Python 3.11's `asyncio.wait_for` (inside pymodbus) loses a cancellation that races with the reply
    (gh-86296): the request returns its reply as if nothing happened. The loop must end anyway, under a task
    group that cancels it once (as the gateway's devices part runs it), not poll on for ever."""
    bus = PtlBus(settings_for(sim))
    bus.watch(1)
    link = bus._link
    real = link.read_input
    armed = False
    waiting = asyncio.Event()
    lost: list[int] = []

    async def racing_read(unit: int, address: int, count: int) -> list[int]:
        if armed and not waiting.is_set():
            waiting.set()
            try:
                await asyncio.Event().wait()  # the request on the wire, its reply not read yet
            except asyncio.CancelledError:  # what wait_for does when the reply wins the race
                lost.append(unit)
        return await real(unit, address, count)

    link.read_input = racing_read  # type: ignore[method-assign]
    group_ended = asyncio.Event()

    async def group() -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(bus.run(), name="bus")
        finally:
            group_ended.set()

    parent = asyncio.create_task(group())
    await until(lambda: bus.stats.modules[1].polls >= 3)
    armed = True
    await asyncio.wait_for(waiting.wait(), LIMIT)  # a poll is waiting for its reply
    parent.cancel()  # the group cancels the bus loop once, inside that poll
    done, _ = await asyncio.wait({parent}, timeout=LIMIT)
    try:
        assert lost == [1], "the cancellation did not land inside the request"
        assert done, "the bus loop ran on after its cancellation was lost"
        assert parent.cancelled() and group_ended.is_set()
    finally:
        while not parent.done():  # only if the loop ran on: stop it for the next test
            for t in asyncio.all_tasks():
                if t.get_name() == "bus":
                    t.cancel()
            await asyncio.wait({parent}, timeout=0.5)


async def test_a_cancellation_lost_in_a_failed_connect_ends_the_loop_before_its_backoff() -> None:
    """pymodbus turns a failed connect into `False` inside its wait_for, which can lose a cancellation that races
    with the failure: the loop must end then, not after the reconnect backoff (here ten minutes)."""
    from drivers.ptl import BusSettings, LinkDown

    settings = BusSettings(id="bus-x", transport="tcp", host="127.0.0.1", port=9, reconnect_min_ms=600_000,
                           reconnect_max_ms=600_000)
    bus = PtlBus(settings)
    connecting = asyncio.Event()

    async def failing_connect() -> None:
        connecting.set()
        with contextlib.suppress(asyncio.CancelledError):  # lost: the failure wins the race
            await asyncio.Event().wait()  # the connect under way
        raise LinkDown("bus-x: cannot open 127.0.0.1:9")

    bus._link.connect = failing_connect  # type: ignore[method-assign]
    task = asyncio.create_task(bus.run(), name="bus-x")
    await asyncio.wait_for(connecting.wait(), LIMIT)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=LIMIT)
    try:
        assert done, "the loop sleeps its backoff after a cancellation lost in the connect"
        assert task.cancelled()
    finally:
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
