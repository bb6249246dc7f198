"""`floorgate sim hub`: the hub simulator for integrators, tests and the demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from gateway.ops.progress import Progress
from gateway.sync.mqtt import MqttSettings
from simulators.hub.hub import HubSim


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("hub", help="hub simulator: receives and checks events, sends commands",
                       description="Stands in for the central hub: subscribes to a gateway's topics, checks every "
                                   "event (gaps, duplicates, order, contract), closes gaps with sync.replay, acks "
                                   "with sync.ack, sends commands and prints a report.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--site", default="dc1")
    p.add_argument("--gateway", default="zone-a")
    p.add_argument("--client-id", default="", help="default hubsim-{site}-{gateway}")
    p.add_argument("--username", default="")
    p.add_argument("--password-file", default="")
    p.add_argument("--tls", action="store_true",
                   help="connect with TLS (as mqtt.tls in the gateway's config); implied by any of the files below; "
                        "without --ca-file the system's trusted CAs verify the broker")
    p.add_argument("--ca-file", default="", help="CA certificate(s) that verify the broker (mqtt.ca_file)")
    p.add_argument("--cert-file", default="", help="client certificate (mqtt.cert_file), with --key-file")
    p.add_argument("--key-file", default="", help="its private key (mqtt.key_file), with --cert-file")
    p.add_argument("--send", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                   help="send a command (repeatable), e.g. --send order.cancel '{\"order_id\":\"O-1\"}'; a JSON "
                        "value starting with @ is read from that file")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C, or "
                                                               "when --send results are in if --exit)")
    p.add_argument("--exit", action="store_true", help="exit once every --send has its result(s)")
    p.add_argument("--events", action="store_true", help="print every event as it arrives")
    p.add_argument("--no-ack", action="store_true", help="do not send sync.ack")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr (sync.replay)")
    p.set_defaults(func=_main)


def _payload(text: str) -> dict[str, Any]:
    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise SystemExit("floorgate sim hub: a command payload must be a JSON object")
    return data


def settings_from_args(args: argparse.Namespace, password: str) -> MqttSettings:
    """The client settings of the command line, read like the gateway's `[mqtt]` keys: TLS when asked for with
    --tls or when any TLS file is given (a certificate never goes over plain TCP), a client certificate only
    with its key."""
    if bool(args.cert_file) != bool(args.key_file):
        raise SystemExit("floorgate sim hub: --cert-file and --key-file go together (both for a client "
                         "certificate, or neither)")
    tls = bool(args.tls or args.ca_file or args.cert_file or args.key_file)
    return MqttSettings(host=args.host, port=args.port,
                        client_id=args.client_id or f"hubsim-{args.site}-{args.gateway}",
                        username=args.username, password=password, tls=tls,
                        ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)


async def _run(args: argparse.Namespace, settings: MqttSettings) -> int:
    hub = HubSim(settings, args.site, args.gateway, auto_ack=not args.no_ack)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.events:
        inner = hub._on_event

        def show(ev: dict[str, Any]) -> None:
            inner(ev)
            print(f"event {ev.get('seq')} {ev.get('type')} {json.dumps(ev.get('data'), ensure_ascii=False)}",
                  flush=True)
        hub._on_event = show  # type: ignore[method-assign]
    replays: dict[str, _Replay] = {}  # by cmd_id, counted from the moment the command is sent
    inner_event = hub._on_event

    def count_replayed(ev: dict[str, Any]) -> None:
        inner_event(ev)
        for r in replays.values():
            r.saw(ev.get("seq"))
    hub._on_event = count_replayed  # type: ignore[method-assign]
    task = asyncio.create_task(hub.run(), name="hubsim")
    try:
        async with asyncio.timeout(30):
            await hub.mqtt.connected.wait()
    except TimeoutError:
        print(f"floorgate sim hub: cannot connect to {args.host}:{args.port}: {hub.mqtt.last_error}",
              file=sys.stderr)
        task.cancel()
        return 1
    print(f"hub simulator connected to {args.host}:{args.port}, topics floorgate/v1/{args.site}/{args.gateway}/#",
          flush=True)
    sent = []
    for name, text in args.send:
        payload = _payload(text)
        cid = f"hubsim-{uuid.uuid4()}"
        if name == "sync.replay":
            replays[cid] = _Replay(payload.get("from_seq"), payload.get("to_seq"), args.quiet)
        hub.send(name, payload, cmd_id=cid)
        sent.append((name, cid, str(payload.get("sync_id", cid)) if isinstance(payload, dict) else cid))

    async def results() -> None:
        # A bulk part is answered `accepted`; its set's `done` comes once, under the cmd_id of whichever part
        # completed the set: wait for that per set, not for a second result of every part.
        sets: dict[str, list[str]] = {}
        for name, cid, sync_id in sent:
            if name == "sync.ack":
                continue
            first = await hub.wait_result(cid, timeout=3600)
            print(f"result {name}: {json.dumps(first, ensure_ascii=False)}", flush=True)
            if name == "sync.replay" and first.get("ok") and first.get("count"):
                await replays[cid].follow(hub, int(first["from_seq"]), int(first["to_seq"]))
            if name in ("masterdata.sync", "order.upsert_batch") and first.get("status") == "accepted":
                sets.setdefault(sync_id, []).append(cid)
        for cids in sets.values():
            await hub.wait_until(lambda cids=cids: any(len(hub.results.get(c, [])) >= 2 for c in cids), 3600)
            for c in cids:
                for res in hub.results.get(c, [])[1:]:
                    print(f"result done: {json.dumps(res, ensure_ascii=False)}", flush=True)
        if args.exit:
            stop.set()

    waiter = asyncio.create_task(results(), name="hubsim-results")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(args.seconds or None):
            await stop.wait()
    waiter.cancel()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    report = hub.report()
    print(json.dumps(report, indent=2, ensure_ascii=False))
    bad = report["conflicts"] or report["invalid"] or any(v["gaps"] for v in report["journals"].values())
    return 1 if bad else 0


class _Replay:
    """A replay of many events runs in the gateway's background (between live events): how much of the range
    has come in again, drawn on stderr until all of it has."""

    def __init__(self, lo: Any, hi: Any, quiet: bool) -> None:
        self.lo = lo if isinstance(lo, int) else 1
        self.hi = hi if isinstance(hi, int) else None  # known from the result when the command leaves it open
        self.quiet = quiet
        self.seen: set[int] = set()
        self.bar: Progress | None = None

    def saw(self, seq: Any) -> None:
        if isinstance(seq, int) and seq >= self.lo and (self.hi is None or seq <= self.hi):
            self.seen.add(seq)
            if self.bar is not None:
                self.bar.update(len(self.seen))

    async def follow(self, hub: HubSim, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.seen = {s for s in self.seen if lo <= s <= hi}
        self.bar = Progress(f"replay {lo}-{hi}", hi - lo + 1, "events", quiet=self.quiet)
        if len(self.seen) < hi - lo + 1:
            self.bar.update(len(self.seen))
        await hub.wait_until(lambda: len(self.seen) >= hi - lo + 1, 3600)
        self.bar.finish()
        print(f"replayed {len(self.seen)} events {lo}-{hi}", flush=True)


def _main(args: argparse.Namespace) -> int:
    password = Path(args.password_file).read_text(encoding="utf-8").strip() if args.password_file else ""
    return asyncio.run(_run(args, settings_from_args(args, password)))
