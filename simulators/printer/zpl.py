"""Just enough of a ZPL II reader to check what a label says: its formats (`^XA`..`^XZ`) and their fields
(`^FD`/`^FV` data up to the next command, with `^FH` hex escapes decoded), each with the formatting
commands given since the previous `^FS` (origin, font, barcode type). It draws nothing.

The default command prefixes `^` and `~` are assumed (`^CC`/`~CT` are not followed), and field data is
decoded as UTF-8, as under `^CI28`.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIXES = "^~"


@dataclass(frozen=True)
class ZplField:
    data: str
    commands: tuple[str, ...]  # e.g. ("FO94,830", "BY4,3,260", "BCN,260,N,N,N"), name first, params after
    origin: tuple[int, int] | None = None
    barcode: str | None = None  # the barcode command, e.g. "BC" (Code 128 / GS1-128)
    barcode_params: str = ""


@dataclass(frozen=True)
class ZplLabel:
    fields: tuple[ZplField, ...]
    commands: tuple[str, ...]  # every command of the format in order, field data left out

    @property
    def barcodes(self) -> list[ZplField]:
        return [f for f in self.fields if f.barcode is not None]

    @property
    def texts(self) -> list[str]:
        return [f.data for f in self.fields if f.barcode is None]

    def command(self, name: str) -> str | None:
        """Parameters of the first command of that name (e.g. "PW" -> "812"), or None."""
        for c in self.commands:
            if c[:2] == name:
                return c[2:]
        return None


def _tokens(text: str) -> list[tuple[str, str]]:
    """(name, parameters) of each command; for ^FD/^FV the parameters are the field data, verbatim."""
    out: list[tuple[str, str]] = []
    i = 0
    n = len(text)
    while i < n:
        if text[i] not in PREFIXES:
            i += 1
            continue
        name = text[i + 1 : i + 3].upper()
        j = i + 3
        while j < n and text[j] not in PREFIXES:
            j += 1
        params = text[i + 3 : j]
        if name not in ("FD", "FV"):
            params = params.replace("\r", "").replace("\n", "").strip()
        out.append((text[i] + name, params))
        i = j
    return out


def _unhex(data: str, indicator: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        if c == indicator and _is_hex(data[i + 1 : i + 3]):
            raw.append(int(data[i + 1 : i + 3], 16))
            i += 3
            continue
        raw += c.encode("utf-8")
        i += 1
    return raw.decode("utf-8", "replace")


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def _origin(params: str) -> tuple[int, int] | None:
    x, _, rest = params.partition(",")
    y = rest.split(",")[0]
    try:
        return int(x or 0), int(y or 0)
    except ValueError:
        return None


def parse_zpl(data: bytes) -> list[ZplLabel]:
    """The label formats in a job; text outside `^XA`..`^XZ` (e.g. `~HS` queries) is skipped."""
    text = data.decode("utf-8", "replace")
    labels: list[ZplLabel] = []
    inside = False
    commands: list[str] = []
    fields: list[ZplField] = []
    pending: list[str] = []
    field_data: str | None = None
    hex_indicator: str | None = None

    def end_field() -> None:
        nonlocal field_data, hex_indicator
        if field_data is not None:
            fd = _unhex(field_data, hex_indicator) if hex_indicator else field_data
            origin = None
            barcode, barcode_params = None, ""
            for c in pending:
                if c[:2] in ("FO", "FT"):
                    origin = _origin(c[2:])
                elif c[0] == "B" and c[:2] != "BY":
                    barcode, barcode_params = c[:2], c[2:]
            fields.append(ZplField(fd, tuple(pending), origin, barcode, barcode_params))
        pending.clear()
        field_data, hex_indicator = None, None

    for name, params in _tokens(text):
        cmd = name[1:]
        if cmd == "XA":
            inside, commands, fields, pending, field_data, hex_indicator = True, [], [], [], None, None
            continue
        if not inside:
            continue
        if cmd == "XZ":
            end_field()
            labels.append(ZplLabel(tuple(fields), tuple(commands)))
            inside = False
            continue
        if cmd in ("FD", "FV"):
            field_data = params
            commands.append(cmd)
            continue
        if cmd == "FS":
            end_field()
            commands.append(cmd)
            continue
        if cmd == "FH":
            hex_indicator = params[:1] or "_"
        commands.append(cmd + params)
        pending.append(cmd + params)
    return labels
