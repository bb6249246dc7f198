"""A child process for test_disk_full_devices.py: run (by the test, under `unshare`) in a mount namespace of its
own, it mounts a small tmpfs, fills it with a ballast file and the journal until a commit fails with a real
ENOSPC, deletes the ballast, commits again, and prints what it saw as one JSON line. The mount goes away with
the process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from gateway.config import parse_config
from gateway.domain.change import Change
from gateway.domain.floor import Floor
from gateway.journal import Journal, JournalError
from gateway.service import FloorService


def fill(n: int) -> Any:
    def op(floor: Floor, change: Change) -> None:
        for _ in range(n):
            change.audit.append({"kind": "filler", "raw": "x" * 1000})
        change.emit("test.filled", {"rows": n})
    return op


async def run(mount: Path) -> dict[str, Any]:
    clock = ManualClock()
    cfg = parse_config({"data_dir": str(mount / "gw")})
    journal = await Journal.open(cfg.db_path, site=cfg.site, gateway=cfg.gateway, clock=clock)
    journal.log_events = False
    service = FloorService(cfg, journal, clock)
    await service.start()
    errors: list[str] = []
    out: dict[str, Any] = {}
    try:
        for _ in range(10_000):
            try:
                await service.execute(fill(20))
            except JournalError as e:
                errors.append(type(e).__name__)
                if len(errors) >= 3:
                    break
        db = journal._conn._conn  # the writer's sqlite3 connection
        out.update(errors=errors, open_transaction=db.in_transaction, full_seq=journal.last_seq,
                   storage=service.floor.storage)
        (mount / "ballast").unlink()  # space returns
        await service.execute(fill(1))
        out.update(after_seq=journal.last_seq, open_transaction_after=db.in_transaction)
    finally:
        await journal.close()
    conn = sqlite3.connect(cfg.db_path)
    try:
        out["integrity"] = conn.execute("PRAGMA integrity_check").fetchone()[0]
        out["seqs"] = [s for (s,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()
    return out


def main(mount: str) -> None:
    path = Path(mount)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)], check=True, timeout=30)
    print("MOUNTED", flush=True)
    with open(path / "ballast", "wb") as f:
        f.write(b"\0" * 1_000_000)
    print(json.dumps(asyncio.run(run(path))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
