"""Expiry dates of certificates and credentials, read without a crypto library.

Only the validity period and the subject's common name of an X.509 certificate are needed, and they sit
at fixed places in its DER encoding, so a tiny TLV reader does the job (every certificate of a PEM bundle,
or a single DER file). Credentials that expire by themselves are recognised too: a JWT used as an MQTT
password (`exp`) and an Azure-style SharedAccessSignature (`se=`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PEM_RE = re.compile(rb"-----BEGIN (?:TRUSTED )?CERTIFICATE-----(.+?)-----END (?:TRUSTED )?CERTIFICATE-----", re.S)
CN_OID = bytes([0x55, 0x04, 0x03])


class CertError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CertInfo:
    subject: str
    not_before: datetime
    not_after: datetime

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400


def _tlv(buf: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at `i`."""
    if i + 2 > len(buf):
        raise CertError("truncated DER")
    tag = buf[i]
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or i + k > len(buf):
            raise CertError("bad DER length")
        n = int.from_bytes(buf[i:i + k], "big")
        i += k
    if i + n > len(buf):
        raise CertError("truncated DER")
    return tag, i, i + n


def _children(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    i = start
    while i < end:
        tag, s, e = _tlv(buf, i)
        out.append((tag, s, e))
        i = e
    return out


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    try:
        if tag == 0x17:  # UTCTime, YYMMDDHHMM[SS]Z
            fmt = "%y%m%d%H%M%SZ" if len(text) == 13 else "%y%m%d%H%MZ"
            dt = datetime.strptime(text, fmt)
        elif tag == 0x18:  # GeneralizedTime, YYYYMMDDHHMMSS[.fff]Z
            dt = datetime.strptime(text.split(".")[0].rstrip("Z") + "Z", "%Y%m%d%H%M%SZ")
        else:
            raise CertError(f"unexpected time tag 0x{tag:02x}")
    except ValueError as e:
        raise CertError(f"bad certificate time {text!r}") from e
    return dt.replace(tzinfo=UTC)


def _common_name(buf: bytes, start: int, end: int) -> str:
    for set_tag, ss, se in _children(buf, start, end):
        if set_tag != 0x31:
            continue
        for seq_tag, qs, qe in _children(buf, ss, se):
            if seq_tag != 0x30:
                continue
            parts = _children(buf, qs, qe)
            if len(parts) == 2 and parts[0][0] == 0x06 and buf[parts[0][1]:parts[0][2]] == CN_OID:
                return buf[parts[1][1]:parts[1][2]].decode("utf-8", errors="replace")
    return ""


def parse_der(der: bytes) -> CertInfo:
    tag, s, _ = _tlv(der, 0)
    if tag != 0x30:
        raise CertError("not a certificate (no outer SEQUENCE)")
    tbs_tag, ts, te = _tlv(der, s)
    if tbs_tag != 0x30:
        raise CertError("not a certificate (no tbsCertificate)")
    fields = _children(der, ts, te)
    if fields and fields[0][0] == 0xA0:  # explicit version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(fields) < 5 or fields[3][0] != 0x30:
        raise CertError("not a certificate (no validity)")
    times = _children(der, fields[3][1], fields[3][2])
    if len(times) != 2:
        raise CertError("not a certificate (bad validity)")
    nb = _time(times[0][0], der[times[0][1]:times[0][2]])
    na = _time(times[1][0], der[times[1][1]:times[1][2]])
    return CertInfo(_common_name(der, fields[4][1], fields[4][2]), nb, na)


def read_certificates(path: str | Path) -> list[CertInfo]:
    """Every certificate in a PEM file (bundles included) or the one in a DER file."""
    data = Path(path).read_bytes()
    blocks = PEM_RE.findall(data)
    if not blocks:
        if data[:1] == b"\x30":
            return [parse_der(data)]
        raise CertError("no certificate found (expected PEM '-----BEGIN CERTIFICATE-----' or DER)")
    out = []
    for b in blocks:
        try:
            der = base64.b64decode(b"".join(b.split()), validate=True)
        except binascii.Error as e:
            raise CertError(f"bad base64 in a PEM block: {e}") from e
        out.append(parse_der(der))
    return out


def credential_expiry(secret: str) -> datetime | None:
    """When a secret that carries its own expiry (JWT `exp`, SAS `se=`) stops working, else None."""
    s = secret.strip()
    m = re.search(r"(?:^|[&\s])se=(\d{9,11})(?:&|$)", s)
    if s.startswith("SharedAccessSignature") and m:
        return datetime.fromtimestamp(int(m.group(1)), UTC)
    parts = s.split(".")
    if len(parts) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts[:2]):
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error):
            return None
        exp = payload.get("exp") if isinstance(payload, dict) else None
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return datetime.fromtimestamp(exp, UTC)
    return None
