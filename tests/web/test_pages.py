"""The page files themselves: both languages have every text, every text a page asks for exists, and no
page carries inline script or style (the Content-Security-Policy would block it)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.web.pages import STATIC, TEMPLATES


def i18n_keys() -> dict[str, set[str]]:
    text = (STATIC / "i18n.js").read_text(encoding="utf-8")
    en = text[text.index("en: {"):text.index("zh: {")]
    zh = text[text.index("zh: {"):]
    key = re.compile(r"(?:^|[\s,{])([a-z][a-z0-9_]*):\s*\"", re.M)
    return {"en": set(key.findall(en)), "zh": set(key.findall(zh))}


def test_both_languages_have_every_text() -> None:
    keys = i18n_keys()
    assert len(keys["en"]) > 150
    assert keys["en"] == keys["zh"], (keys["en"] ^ keys["zh"])


def test_every_text_a_page_uses_exists() -> None:
    keys = i18n_keys()["en"]
    used: set[str] = set()
    for f in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r'data-i18n(?:-placeholder|-label)?="([a-z0-9_]+)"', f.read_text(encoding="utf-8")))
    for f in STATIC.glob("*.js"):
        js = f.read_text(encoding="utf-8")
        used |= {k for k in re.findall(r'\bt\("([a-z0-9_]+)"', js) if not k.endswith("_")}  # not prefixes
        for heads in re.findall(r"table\(\[([^\]]*)\]", js):  # table headers are keys too
            used |= {h.strip().strip('"') for h in heads.split(",")} - {""}
    assert used - keys == set()
    codes = ["unknown_barcode", "invalid_barcode", "wrong_item", "wrong_location", "wrong_lot", "lot_required",
             "expired", "short_shelf_life", "serial_repeated", "over_scan", "not_expected", "order_not_ready",
             "not_logged_in", "not_allowed", "no_task"]
    assert {f"code_{c}" for c in codes} <= keys  # every scan.rejected code of SPEC has a headline
    states = ["received", "assigned", "picking", "picked", "short_picked", "packing", "packed", "on_hold",
              "cancelled"]
    assert {f"state_{s}" for s in states} <= keys


def test_pages_have_no_inline_script_or_style() -> None:
    for f in TEMPLATES.glob("*.html"):
        html = f.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), f.name
        assert "<style" not in html and " style=" not in html and " on" + "click=" not in html, f.name
    assert Path(STATIC / "app.css").stat().st_size > 0
