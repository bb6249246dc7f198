"""The raw-port printer client against the printer simulator on loopback, and the simulator's ZPL reader."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.printer import (
    PrinterError,
    PrinterRefused,
    PrinterTimeout,
    PrinterUnreachable,
    RawTcpPrinter,
    print_raw,
)
from gateway.domain.label import ShippingLabel, render_zpl
from gateway.domain.sscc import make_sscc
from simulators.printer import PrinterSimulator, parse_zpl
from simulators.printer.cli import describe

SAFE = 10.0


async def test_label_arrives_with_sscc_in_the_barcode_and_the_text(printer_sim: PrinterSimulator) -> None:
    sscc = make_sscc(0, "0614141", 42)
    job = render_zpl(ShippingLabel(sscc=sscc, order_id="DY20260127000892", station="pack-1", item_count=3,
                                   carton="BOX-S", weight_g=1234.0, company_prefix_len=7))
    await RawTcpPrinter("127.0.0.1", printer_sim.port).send(job)
    [stored] = await printer_sim.wait_for_jobs(1, SAFE)
    assert stored.data == job
    assert stored.path is not None and stored.path.read_bytes() == job
    [label] = stored.labels
    [barcode] = label.barcodes
    assert barcode.barcode == "BC"
    assert barcode.data == ">;>800" + sscc
    assert "(00) 0 0614141 000000042 " + sscc[-1] in label.texts
    assert "DY20260127000892" in label.texts
    assert "job 1 from 127.0.0.1:" in describe(stored)


async def test_jobs_to_one_printer_go_one_at_a_time(printer_sim: PrinterSimulator) -> None:
    printer = RawTcpPrinter("127.0.0.1", printer_sim.port)
    jobs = [f"^XA^FO10,10^A0N,30,30^FDlabel {i}^FS^XZ".encode() for i in range(5)]
    async with asyncio.TaskGroup() as tg:
        for i, job in enumerate(jobs):
            tg.create_task(printer.send(job), name=f"print-{i}")
    stored = await printer_sim.wait_for_jobs(5, SAFE)
    assert sorted(j.data for j in stored) == sorted(jobs)  # never interleaved into one another
    assert sorted(j.labels[0].texts[0] for j in stored) == [f"label {i}" for i in range(5)]


async def test_print_raw_one_off(printer_sim: PrinterSimulator) -> None:
    await print_raw("127.0.0.1", printer_sim.port, b"^XA^FDx^FS^XZ")
    assert (await printer_sim.wait_for_jobs(1, SAFE))[0].labels[0].texts == ["x"]


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


async def test_refused(closed_port: int) -> None:
    printer = RawTcpPrinter("127.0.0.1", closed_port)
    with pytest.raises(PrinterRefused, match="refused") as info:
        await printer.send(b"^XA^XZ")
    assert (info.value.host, info.value.port) == ("127.0.0.1", closed_port)
    with pytest.raises(PrinterRefused):
        await printer.probe()


async def test_probe_ok(printer_sim: PrinterSimulator) -> None:
    await RawTcpPrinter("127.0.0.1", printer_sim.port).probe()
    assert printer_sim.jobs == []  # a probe sends nothing, so it is no job


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listener never accepts and whose queue is full: new connections hang (SYN dropped)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port: int = srv.getsockname()[1]
    filler = socket.socket()
    filler.settimeout(5)
    filler.connect(("127.0.0.1", port))
    try:
        yield port
    finally:
        filler.close()
        srv.close()


async def test_connect_timeout(full_backlog: int) -> None:
    printer = RawTcpPrinter("127.0.0.1", full_backlog, connect_timeout_s=0.3)
    with pytest.raises(PrinterTimeout, match="did not accept a connection"):
        await printer.send(b"^XA^XZ")


async def test_printer_that_stops_reading_times_out(tmp_path: Path) -> None:
    async with PrinterSimulator("127.0.0.1", 0, recv_buffer=4096) as sim:
        sim.stall = True  # out of labels: it takes the connection, then no more bytes
        printer = RawTcpPrinter("127.0.0.1", sim.port, send_timeout_s=0.5)
        with pytest.raises(PrinterTimeout, match="stopped taking data"):
            await printer.send(b"^XA" + b"^FO0,0^GB10,10,1^FS" * 500_000 + b"^XZ")
        assert sim.jobs == []


async def test_connection_dropped_mid_job() -> None:
    async with PrinterSimulator("127.0.0.1", 0, max_job_bytes=1024) as sim:
        with pytest.raises(PrinterError, match="dropped the connection") as info:
            await RawTcpPrinter("127.0.0.1", sim.port).send(b"x" * 16_000_000)
        assert type(info.value) is PrinterError
        [job] = await sim.wait_for_jobs(1, SAFE)
        assert job.truncated


async def test_unreachable() -> None:
    with pytest.raises(PrinterUnreachable, match="unreachable"):
        await RawTcpPrinter("255.255.255.255", 9100).send(b"^XA^XZ")  # Linux refuses TCP to broadcast


async def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="port"):
        RawTcpPrinter("127.0.0.1", 0)
    with pytest.raises(ValueError, match="empty"):
        await RawTcpPrinter("127.0.0.1", 9100).send(b"")


# -- the simulator's ZPL reader ----------------------------------------------------------------------------


def test_zpl_fields_origins_and_hex_escapes() -> None:
    [label] = parse_zpl(b"~HS^XA^CI28^PW812\r\n^FO10,20^A0N,30,30^FH^FDa_5Eb_7Ec_5F_C3_9C^FS"
                        b"^FT5,6^BY4^BCN,100,N,N,N^FD>;>80012^FS^XZ")
    text, code = label.fields
    assert (text.data, text.origin, text.barcode) == ("a^b~c_Ü", (10, 20), None)
    assert (code.data, code.origin, code.barcode, code.barcode_params) == (">;>80012", (5, 6), "BC", "N,100,N,N,N")
    assert label.command("PW") == "812" and label.command("LL") is None


def test_zpl_several_labels_and_text_outside_formats() -> None:
    labels = parse_zpl(b"junk^FDignored^FS^XA^FDone^FS^XZ\n^XA^FDtwo^FS^FDthree^XZ~JA")
    assert [lab.texts for lab in labels] == [["one"], ["two", "three"]]


def test_zpl_without_a_format_is_no_label() -> None:
    assert parse_zpl(b"") == []
    assert parse_zpl(b"\xff\xfe not zpl") == []
    assert parse_zpl(b"^XA^FDunterminated") == []
