"""The simulators' command lines (`floorgate sim scale`, `floorgate sim printer`), run as real processes
and driven by the real drivers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.printer import RawTcpPrinter
from drivers.scale import SerialScale
from simulators.printer import cli as printer_cli
from simulators.scale import ScaleSimulator
from simulators.scale import cli as scale_cli

SAFE = 20.0
RUN = ("import argparse, sys\n"
       "from simulators.{kind} import cli\n"
       "p = argparse.ArgumentParser(); sub = p.add_subparsers(required=True); cli.add_parser(sub)\n"
       "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="floorgate sim")
    sub = p.add_subparsers(dest="sim", required=True)
    scale_cli.add_parser(sub)
    printer_cli.add_parser(sub)
    return p


def test_parsers_hook_into_a_sim_subcommand() -> None:
    a = parser().parse_args(["scale", "--mode", "continuous", "--format", "comma", "--link", "/tmp/x"])
    assert (a.mode, a.stream_format, a.link, a.func) == ("continuous", "comma", "/tmp/x", scale_cli._run)
    a = parser().parse_args(["printer", "--port", "9101", "--dir", "/tmp/jobs"])
    assert (a.port, a.dir, a.func) == (9101, "/tmp/jobs", printer_cli._run)
    with pytest.raises(SystemExit):
        parser().parse_args(["scale", "--unit", "stone"])


async def test_typed_commands(tmp_path: Path) -> None:
    async with ScaleSimulator(link=tmp_path / "s") as sim:
        assert scale_cli.apply_command(sim, "put 1234.5") == "load 1234.5 g" and sim.grams == 1234.5
        assert scale_cli.apply_command(sim, "put 10 2") == "load 10 g"
        assert scale_cli.apply_command(sim, "silent") == "silent" and sim.silent
        assert scale_cli.apply_command(sim, "talk") == "talking" and not sim.silent
        assert scale_cli.apply_command(sim, "overload") == "overload"
        assert scale_cli.apply_command(sim, "garbage") == "next reply is garbage"
        assert scale_cli.apply_command(sim, "unplug") == "unplugged" and not sim.plugged
        assert scale_cli.apply_command(sim, "replug").startswith("plugged in at") and sim.plugged
        for bad in ["put", "put x", "put 1 2 3", "fly", "silent now"]:
            assert scale_cli.apply_command(sim, bad) == scale_cli.HELP
        assert scale_cli.apply_command(sim, "  ") == ""


@contextlib.asynccontextmanager
async def run(kind: str, *args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN.format(kind=kind), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(SAFE):
            first = (await proc.stdout.readline()).decode()
        yield proc, first
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(SAFE):
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()


async def test_scale_simulator_process(tmp_path: Path) -> None:
    link = tmp_path / "scale-1"
    async with run("scale", "scale", "--link", str(link), "--grams", "500") as (proc, first):
        assert f"at {link}" in first
        async with SerialScale(str(link)) as scale:
            assert (await scale.read_stable(SAFE)).grams == 500.0
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"put 1234\n")
            await proc.stdin.drain()
            async with asyncio.timeout(SAFE):
                assert (await proc.stdout.readline()).decode().strip() == "load 1234 g"
            assert (await scale.read_stable(SAFE)).grams == 1234.0
    assert proc.returncode == 0
    assert not link.exists()


async def test_printer_simulator_process(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    async with run("printer", "printer", "--port", "0", "--dir", str(jobs)) as (proc, first):
        port = int(first.rsplit(":", 1)[1])
        await RawTcpPrinter("127.0.0.1", port).send(b"^XA^FO1,1^FDhello^FS^XZ")
        assert proc.stdout is not None
        async with asyncio.timeout(SAFE):
            lines = [(await proc.stdout.readline()).decode() for _ in range(3)]
        assert lines[0].startswith("job 1 from 127.0.0.1:") and "text: hello" in lines[1]
    assert proc.returncode == 0
    assert (jobs / "job-000001.zpl").read_bytes() == b"^XA^FO1,1^FDhello^FS^XZ"


async def test_printer_simulator_port_in_use(tmp_path: Path) -> None:
    async with run("printer", "printer", "--port", "0") as (_, first):
        port = first.rsplit(":", 1)[1].strip()
        async with run("printer", "printer", "--port", port) as (second, msg):
            assert "cannot listen" in msg
            async with asyncio.timeout(SAFE):
                assert await second.wait() == 1
