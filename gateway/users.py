"""Local passwords for the supervisor and technician pages, and `floorgate user set-password`.

A password set here is stored as an argon2id hash in the journal database as a local document (`docs`,
kind `user`), so it survives master data syncs and wins over the hub's `password_hash`: a site can give a
technician access without waiting for the hub. It is written with a short transaction of its own, which
is safe while the gateway runs; the pages read it at every login, so it applies at once.

Hashes are checked with maintained libraries only (argon2-cffi, bcrypt); nothing here logs a password.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

USER_KIND = "user"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # bounds the work an attacker can make the hasher do
# argon2id with OWASP's minimum (19 MiB, 2 passes): argon2-cffi's default profile takes 64 MiB per hash,
# a third of what a 1 GB gateway can spare for a login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_dummy: str | None = None


def _dummy_hash() -> str:
    """Verified when the operator has no hash at all, so an unknown name costs as much time as a wrong
    password. Made on first use, not at import: the idle gateway never pays for it."""
    global _dummy
    if _dummy is None:
        _dummy = _hasher.hash("floorgate-no-such-user")
    return _dummy


class UserError(Exception):
    pass


def hash_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(password: str, hashed: str | None) -> bool:
    """True when `password` matches an argon2 (`$argon2id$...`) or bcrypt (`$2b$...`) hash. Slow on purpose:
    call it off the event loop."""
    if len(password) > MAX_PASSWORD:
        return False
    if not hashed:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_dummy_hash(), password + "x")
        return False
    if hashed.startswith("$argon2"):
        try:
            return _hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if hashed.startswith(("$2a$", "$2b$", "$2y$")):
        try:
            return bcrypt.checkpw(password.encode("utf-8")[:72], hashed.encode("ascii"))
        except ValueError:
            return False
    return False


def user_doc(operator_id: str, hashed: str, now: datetime) -> dict[str, str]:
    from gateway.clock import rfc3339

    return {"operator_id": operator_id, "password_hash": hashed, "set_at": rfc3339(now)}


def store_password(db_path: Path, operator_id: str, hashed: str, *, site: str, gateway: str,
                   now: datetime | None = None) -> bool:
    """Write the local hash; returns whether the operator is in the live master data (a warning if not). Run
    before the gateway's first start, it makes the journal (its id and names, as the gateway would)."""
    from gateway.clock import rfc3339
    from gateway.journal.schema import migrate
    from gateway.journal.store import ensure_identity

    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=10)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA journal_mode=wal")
        migrate(conn)
        now = now or datetime.now(UTC)
        ensure_identity(conn, site, gateway, rfc3339(now), str(db_path))
        doc = user_doc(operator_id, hashed, now)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT OR REPLACE INTO docs(kind, id, body) VALUES (?, ?, ?)",
                         (USER_KIND, operator_id, json.dumps(doc)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        row = conn.execute("SELECT value FROM meta WHERE key = 'md_gen'").fetchone()
        gen = int(row[0]) if row else 1
        known = conn.execute("SELECT 1 FROM masterdata WHERE gen = ? AND kind = 'operator' AND id = ?",
                             (gen, operator_id)).fetchone()
        return known is not None
    finally:
        conn.close()


def operator_roles(db_path: Path, operator_id: str) -> list[str] | None:
    """The operator's roles in the live master data, None when they are not in it."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'md_gen'").fetchone()
        gen = int(row[0]) if row else 1
        doc = conn.execute("SELECT body FROM masterdata WHERE gen = ? AND kind = 'operator' AND id = ?",
                           (gen, operator_id)).fetchone()
    finally:
        conn.close()
    if doc is None:
        return None
    roles = json.loads(doc[0]).get("roles") if isinstance(doc[0], str) else None
    return [str(r) for r in roles] if isinstance(roles, list) else []


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass(f"New password for {args.operator}: ")
    if getpass.getpass("Again: ") != first:
        raise UserError("the two passwords differ; nothing changed")
    return first


def _set_password(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"floorgate user: bad config: {e}", file=sys.stderr)
        return 2
    try:
        hashed = hash_password(_read_password(args))
        known = store_password(cfg.db_path, args.operator, hashed, site=cfg.site, gateway=cfg.gateway)
    except UserError as e:
        print(f"floorgate user set-password: {e}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:
        print(f"floorgate user set-password: cannot write {cfg.db_path}: {e}", file=sys.stderr)
        return 1
    print(f"password set for {args.operator} (argon2id, stored in {cfg.db_path}; it wins over master data)")
    if not known:
        print(f"note: {args.operator} is not in the current master data; the password works once the hub "
              "sends that operator with a supervisor or technician role", file=sys.stderr)
    else:
        roles = operator_roles(cfg.db_path, args.operator) or []
        if not {"supervisor", "technician"} & set(roles):
            print(f"note: {args.operator} has no supervisor or technician role ({', '.join(roles) or 'none'}): "
                  "the password opens no page until master data gives them one (pickers and packers log in "
                  "with their badge)", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="local passwords for the supervisor and technician pages")
    usub = user.add_subparsers(dest="user_command", required=True)
    p = usub.add_parser("set-password", help="set an operator's page password (argon2id, local, wins over "
                                             "the hub's password_hash)")
    p.add_argument("--config", required=True, help="path of the TOML config")
    p.add_argument("--operator", required=True, help="operator_id from master data")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input instead of asking")
    p.set_defaults(func=_set_password)
