"""The register codec: pure encode/decode, and agreement with the firmware's own constants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ptl import codec
from drivers.ptl.codec import (
    Colour,
    CommSettings,
    Mode,
    Parity,
    Pattern,
    decode_comm,
    decode_identity,
    decode_status,
    decode_text,
    decode_u32,
    encode_comm,
    encode_job,
    encode_text,
    encode_u32,
)
from drivers.ptl.model import BusSettings, ModuleState
from firmware_stubs.ptl_node import registers as fw
from firmware_stubs.ptl_node.registers import Node


def test_register_map_matches_the_firmware() -> None:
    names = ["HR_MODE", "HR_QUANTITY", "HR_COLOUR", "HR_PATTERN", "HR_TOKEN", "HR_CLEAR", "HR_COMMAND",
             "HR_MODEL_NUMBER", "HR_MODEL_NAME", "HR_SERIAL", "HR_UNIT_ID", "HR_BAUD", "HR_PARITY", "HR_STOPBITS",
             "IR_STATUS", "IR_CONFIRMED_QTY", "IR_TOKEN_ECHO", "IR_COUNTER", "IR_FIRMWARE", "ST_CONFIRM",
             "ST_SHORTAGE", "ST_ADJUSTED", "ST_JOB_ACTIVE", "ST_FAULT", "ST_POWER_UP", "COIL_BUZZER",
             "COIL_KEYS_LOCKED"]
    for name in names:
        assert getattr(codec, name) == getattr(fw, name), name
    assert [m.value for m in Mode] == [fw.MODE_OFF, fw.MODE_JOB, fw.MODE_INFO, fw.MODE_ERROR, fw.MODE_DONE]
    assert tuple(b // 100 for b in codec.BAUD_RATES) == fw.BAUD_CODES


def test_job_registers_and_validation() -> None:
    assert encode_job(Mode.JOB, 12, Colour.BLUE, Pattern.BLINK_1HZ, 4711) == [1, 12, 3, 1, 4711]
    assert ModuleState.error(9, qty=3).registers() == [3, 3, 1, 0, 9]
    assert ModuleState.done().registers() == [4, 0, 2, 0, 0]
    assert ModuleState.info(7, Colour.CYAN).job_token is None
    assert ModuleState.error(9).job_token == 9
    for bad in (-1, 10000):
        with pytest.raises(ValueError, match="quantity"):
            encode_job(Mode.JOB, bad, Colour.RED, Pattern.STEADY, 1)
    with pytest.raises(ValueError, match="token"):
        encode_job(Mode.JOB, 1, Colour.RED, Pattern.STEADY, 70000)
    with pytest.raises(ValueError):
        encode_job(Mode.JOB, 1, Colour.RED, 7, 1)  # type: ignore[arg-type]


def test_status_bits_and_shortage_wins() -> None:
    s = decode_status([0b1000_0000_0000_1111, 3, 77, 9])
    assert (s.confirm, s.shortage, s.adjusted, s.job_active, s.powered_up, s.fault) == (True, True, True, True,
                                                                                       True, False)
    assert s.key_kind == "shortage"
    assert decode_status([1, 0, 0, 0]).key_kind == "confirm"
    assert decode_status([0x100, 0, 0, 0]).key_kind is None and decode_status([0x100, 0, 0, 0]).fault
    with pytest.raises(ValueError, match="4 input registers"):
        decode_status([0, 0, 0])


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=32))
def test_text_roundtrip(text: str) -> None:
    assert decode_text(encode_text(text)) == text.strip()


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_u32_low_word_first_roundtrip(v: int) -> None:
    regs = encode_u32(v)
    assert regs[0] == v & 0xFFFF and decode_u32(regs) == v


def test_identity_decodes_the_firmware_block() -> None:
    n = Node(serial="FG-PTL-000123", model_number=70001, model_name="Floorgate PTL-4D", firmware=0x0203)
    ident = decode_identity(n.read_holding(1000, 54, 0), n.read_input(4, 1, 0)[0])
    assert (ident.model_number, ident.model_name, ident.serial, ident.firmware) == (
        70001, "Floorgate PTL-4D", "FG-PTL-000123", "2.3")
    with pytest.raises(ValueError, match="54"):
        decode_identity([0] * 10, 0)
    with pytest.raises(ValueError, match="longer"):
        encode_text("x" * 33)


def test_comm_block() -> None:
    c = CommSettings(12, 19200, Parity.EVEN, 1)
    assert encode_comm(c) == [12, 192, 2, 1] and decode_comm([12, 192, 2, 1]) == c
    for bad, match in ((CommSettings(0, 19200, Parity.NONE, 1), "unit id"),
                       (CommSettings(1, 12345, Parity.NONE, 1), "baud"),
                       (CommSettings(1, 19200, Parity.NONE, 3), "stop bits")):
        with pytest.raises(ValueError, match=match):
            encode_comm(bad)


def test_bus_settings_validate_and_read_config_objects() -> None:
    class Cfg:  # the shape of gateway.config.BusConfig
        id = "bus-b"
        transport = "rtu"
        host = "127.0.0.1"
        port = "/dev/ttyUSB0"
        baudrate = 19200
        parity = "E"
        stopbits = 1
        poll_ms = 30
        timeout_ms = 80
        misses_offline = 4

    s = BusSettings.from_config(Cfg())
    assert (s.id, s.transport, s.port, s.baudrate, s.poll_ms, s.misses_offline, s.health_ms) == (
        "bus-b", "rtu", "/dev/ttyUSB0", 19200, 30, 4, 1000)
    with pytest.raises(ValueError, match="serial device path"):
        BusSettings(id="x", transport="rtu", port=502)
    with pytest.raises(ValueError, match="TCP port"):
        BusSettings(id="x", transport="tcp", port="/dev/ttyUSB0")
    with pytest.raises(ValueError, match="timeout_ms"):
        BusSettings(id="x", timeout_ms=0)
    with pytest.raises(ValueError, match="probe_share"):
        BusSettings(id="x", probe_share=0)


def test_bus_settings_from_the_gateway_config_model() -> None:
    from gateway.config import BusConfig

    s = BusSettings.from_config(BusConfig(id="bus-a"))
    assert (s.id, s.transport, s.host, s.port, s.poll_ms, s.timeout_ms, s.misses_offline) == (
        "bus-a", "tcp", "127.0.0.1", 5020, 20, 100, 3)
