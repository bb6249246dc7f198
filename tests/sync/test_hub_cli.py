"""`floorgate sim hub` reads its TLS options like the gateway's `[mqtt]` keys: TLS with --tls or with any TLS
file, a client certificate only with its key; and it really connects to a TLS broker that way."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import pytest

from simulators.hub.cli import add_parser, settings_from_args
from tests.brokers import Broker
from tests.sync.test_security import make_pki

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    return p.parse_args(["hub", *argv])


async def sim_hub(port: int, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`floorgate sim hub --port PORT ARGV...` in its own process: its exit code, stdout and stderr (killed
    if still running after a safety limit, never a measurement)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "sim", "hub", "--port", str(port), *argv, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(120):  # the simulator itself gives up connecting after 30 s
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return int(proc.returncode or 0), out.decode(errors="replace"), err.decode(errors="replace")


@pytest.mark.parametrize(("argv", "tls"), [
    ((), False),
    (("--tls",), True),
    (("--ca-file", "ca.crt"), True),
    (("--cert-file", "c.crt", "--key-file", "c.key"), True),
    (("--tls", "--ca-file", "ca.crt", "--cert-file", "c.crt", "--key-file", "c.key"), True),
])
def test_tls_is_on_when_any_tls_option_is_given(argv: tuple[str, ...], tls: bool) -> None:
    s = settings_from_args(parse(*argv), "")
    assert s.tls is tls
    assert (s.ca_file, s.cert_file, s.key_file) == (parse(*argv).ca_file, parse(*argv).cert_file,
                                                    parse(*argv).key_file)


@pytest.mark.parametrize("argv", [("--cert-file", "c.crt"), ("--key-file", "c.key")])
def test_client_certificate_needs_its_key(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit, match="--cert-file and --key-file go together"):
        settings_from_args(parse(*argv), "")


async def test_sim_hub_connects_to_a_tls_broker_with_a_client_certificate(tmp_path: Path) -> None:
    """No --ca-file: the broker is verified with the default trust store (here pointed at the test CA with
    SSL_CERT_FILE), and the client certificate alone switches TLS on."""
    pki = make_pki(tmp_path / "pki")
    tls = {"ca": str(pki["ca.crt"]), "cert": str(pki["server.crt"]), "key": str(pki["server.key"])}
    with Broker(tmp_path / "broker", tls=tls) as broker:
        rc, text, err = await sim_hub(broker.port, "--cert-file", str(pki["client.crt"]), "--key-file",
                                      str(pki["client.key"]), "--exit",
                                      env={**os.environ, "SSL_CERT_FILE": str(pki["ca.crt"])})
    assert rc == 0, text + err
    assert f"hub simulator connected to 127.0.0.1:{broker.port}" in text


async def test_exit_after_a_multi_part_bulk_set_is_done(tmp_path: Path) -> None:
    """`--exit` with a set sent in two parts: each part is answered `accepted` and the set's `done` comes once,
    under the part that completed it; the simulator must exit then (it used to wait for a second result of
    every part, for ever)."""
    import json

    from tests.conftest import SKUS
    from tests.sync.conftest import gateway_config, running_gateway

    with Broker(tmp_path / "broker") as broker:
        async with running_gateway(gateway_config(tmp_path, broker)) as app:
            parts = [{"mode": "merge", "sync_id": "two-parts", "part": k + 1, "parts": 2, "skus": SKUS[k::2]}
                     for k in range(2)]
            argv = [a for part in parts for a in ("--send", "masterdata.sync", json.dumps(part))]
            rc, text, err = await sim_hub(broker.port, *argv, "--exit")
            assert app.service is not None
            skus = set(app.service.floor.md.skus)
    assert rc == 0, text + err
    assert text.count('"status": "accepted"') == 2 and text.count("result done:") == 1, text
    assert {s["sku"] for s in SKUS} <= skus


async def test_a_replay_of_many_events_shows_its_progress_until_all_are_in(tmp_path: Path) -> None:
    """`--send sync.replay` with `--exit`: the gateway republishes in the background; the simulator draws a
    progress bar on stderr (a line per tenth when not on a terminal) and exits once the whole range is in,
    counting events that came in before the command's result too."""
    from tests.bulk.test_bulk_resume import command
    from tests.conftest import SKUS, order
    from tests.sync.conftest import gateway_config, running_gateway

    with Broker(tmp_path / "broker") as broker:
        async with running_gateway(gateway_config(tmp_path, broker)) as app:
            assert app.service is not None and app.journal is not None
            await command(app.service, "masterdata.sync", {"cmd_id": "md", "mode": "merge", "sync_id": "md",
                                                           "part": 1, "parts": 1, "skus": SKUS})
            for i in range(120):
                await command(app.service, "order.upsert", {"cmd_id": f"o-{i}",
                                                            "order": order(f"R-{i}", lines=[(1, "SKU-1", 1)])})
            last, jid = app.journal.last_seq, app.journal.journal_id
            payload = f'{{"journal":"{jid}","from_seq":1,"to_seq":{last}}}'
            rc, text, bar = await sim_hub(broker.port, "--no-ack", "--send", "sync.replay", payload, "--exit")
    assert rc == 0, text + bar
    assert f'"count": {last}' in text and f"replayed {last} events 1-{last}" in text, text
    lines = [x for x in bar.splitlines() if x.startswith(f"replay 1-{last} [")]
    assert lines and lines[-1].endswith(f"100% {last}/{last} events"), bar  # how many before: timing
