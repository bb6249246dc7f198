"""A checker for udev rule files, after udev(7) of systemd 252 (whose `udevadm` has no `verify` verb yet).

Each line is `KEY[{attr}] OP "value"` pairs separated by commas. Checked: known keys, which operators each
key takes (match keys `==`/`!=`, assignment keys their own subset), whether `{attr}` is required,
allowed or forbidden, quoting, commas, `$`-substitutions, MODE in octal, OWNER/GROUP existing on this
system, GOTO targets having a LABEL, and that every line does something (a line of matches only is dead).
"""

from __future__ import annotations

import grp
import pwd
import re
from dataclasses import dataclass

MATCH = frozenset({"==", "!="})
ASSIGN_ALL = frozenset({"=", "+=", "-=", ":="})

# key: (operators allowed, attr: "required" | "optional" | "none")
KEYS: dict[str, tuple[frozenset[str], str]] = {
    "ACTION": (MATCH, "none"),
    "DEVPATH": (MATCH, "none"),
    "KERNEL": (MATCH, "none"),
    "KERNELS": (MATCH, "none"),
    "SUBSYSTEM": (MATCH, "none"),
    "SUBSYSTEMS": (MATCH, "none"),
    "DRIVER": (MATCH, "none"),
    "DRIVERS": (MATCH, "none"),
    "ATTRS": (MATCH, "required"),
    "TAGS": (MATCH, "none"),
    "CONST": (MATCH, "required"),
    "TEST": (MATCH, "optional"),
    "PROGRAM": (MATCH, "none"),
    "RESULT": (MATCH, "none"),
    "NAME": (MATCH | {"=", ":="}, "none"),
    "SYMLINK": (MATCH | ASSIGN_ALL, "none"),
    "ATTR": (MATCH | {"="}, "required"),
    "SYSCTL": (MATCH | {"="}, "required"),
    "ENV": (MATCH | {"=", "+=", ":="}, "required"),
    "TAG": (MATCH | ASSIGN_ALL, "none"),
    "OWNER": (frozenset({"=", ":="}), "none"),
    "GROUP": (frozenset({"=", ":="}), "none"),
    "MODE": (frozenset({"=", ":="}), "none"),
    "SECLABEL": (frozenset({"=", "+=", ":="}), "required"),
    "RUN": (ASSIGN_ALL, "optional"),
    "LABEL": (frozenset({"="}), "none"),
    "GOTO": (frozenset({"="}), "none"),
    "IMPORT": (frozenset({"="}), "required"),
    "OPTIONS": (frozenset({"=", "+="}), "none"),
}
IMPORT_TYPES = {"program", "builtin", "file", "db", "cmdline", "parent"}
RUN_TYPES = {"builtin", "program"}
SUBST_PLAIN = {"kernel", "number", "devpath", "id", "driver", "major", "minor", "result", "parent", "name",
               "links", "root", "sys", "devnode", "tempnode"}
SUBST_ARG = {"attr", "env"}
PCT = set("knpbdMmscPNrSDe%")
TOKEN = re.compile(r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]*)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*'
                   r'"(?P<val>(?:[^"\\]|\\.)*)"\s*')


@dataclass(frozen=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, text) with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        if raw.endswith("\\"):
            buf += raw[:-1]
            continue
        buf += raw
        out.append((start, buf))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def _check_substitutions(value: str) -> str | None:
    i = 0
    while i < len(value):
        c = value[i]
        if c == "$":
            m = re.match(r"\$(\$|[a-z]+)(\{[^}]*\})?", value[i:])
            if not m:
                return f"stray '$' in {value!r} (write $$ for a literal $)"
            word, arg = m.group(1), m.group(2)
            if word != "$" and word not in SUBST_PLAIN | SUBST_ARG:
                return f"unknown substitution ${word}"
            if word in SUBST_ARG and not arg:
                return f"${word} needs {{...}}"
            i += len(m.group(0))
            continue
        if c == "%":
            if i + 1 >= len(value) or value[i + 1] not in PCT:
                return f"unknown substitution %{value[i + 1:i + 2]}"
            i += 2
            continue
        i += 1
    return None


def check_rules(text: str) -> list[Problem]:
    problems: list[Problem] = []
    labels: set[str] = set()
    gotos: list[tuple[int, str]] = []
    for n, line in logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pos = 0
        tokens = []
        while pos < len(line):
            m = TOKEN.match(line, pos)
            if not m:
                problems.append(Problem(n, f"cannot parse at column {pos + 1}: {line[pos:pos + 30]!r}"))
                break
            tokens.append(m)
            pos = m.end()
            if pos < len(line):
                if line[pos] != ",":
                    problems.append(Problem(n, f"expected ',' between pairs at column {pos + 1}"))
                    break
                pos += 1
                if not line[pos:].strip():
                    problems.append(Problem(n, "trailing comma"))
                    break
        acts = 0
        for m in tokens:
            key, attr, op, val = m.group("key"), m.group("attr"), m.group("op"), m.group("val")
            spec = KEYS.get(key)
            if spec is None:
                problems.append(Problem(n, f"unknown key {key}"))
                continue
            ops, attr_rule = spec
            if op not in ops:
                problems.append(Problem(n, f"{key} does not take operator {op}"))
            if attr_rule == "required" and not attr:
                problems.append(Problem(n, f"{key} needs {{...}}"))
            if attr_rule == "none" and attr is not None:
                problems.append(Problem(n, f"{key} takes no {{...}}"))
            if key == "IMPORT" and attr not in IMPORT_TYPES:
                problems.append(Problem(n, f"IMPORT{{{attr}}}: type must be one of {sorted(IMPORT_TYPES)}"))
            if key == "RUN" and attr is not None and attr not in RUN_TYPES:
                problems.append(Problem(n, f"RUN{{{attr}}}: type must be builtin or program"))
            if op not in MATCH:
                acts += 1
            if key == "MODE" and not re.fullmatch(r"0?[0-7]{3,4}", val):
                problems.append(Problem(n, f"MODE {val!r} is not an octal mode"))
            if key == "GROUP" and "$" not in val:
                try:
                    grp.getgrnam(val)
                except KeyError:
                    problems.append(Problem(n, f"GROUP {val!r} does not exist on this system"))
            if key == "OWNER" and "$" not in val:
                try:
                    pwd.getpwnam(val)
                except KeyError:
                    problems.append(Problem(n, f"OWNER {val!r} does not exist on this system"))
            if key == "LABEL":
                labels.add(val)
            if key == "GOTO":
                gotos.append((n, val))
            bad = _check_substitutions(val) if key not in ("LABEL", "GOTO") else None
            if bad:
                problems.append(Problem(n, bad))
        if tokens and acts == 0:
            problems.append(Problem(n, "only matches, nothing assigned: the line does nothing"))
    for n, target in gotos:
        if target not in labels:
            problems.append(Problem(n, f"GOTO {target!r} has no LABEL in this file"))
    return problems
