"""Bulk parts are stored compressed, a slice at a time; text stored by earlier versions still reads back."""

from __future__ import annotations

import json
import os

from gateway import blobs


async def test_compress_and_expand_round_trip_in_slices() -> None:
    body = json.dumps({"skus": [{"sku": f"SKU-{i:06d}", "gtins": ["04006381333931"], "name": "Größe ✓"}
                                for i in range(20_000)]}).encode()
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1
    stored = await blobs.compress(body, pause)
    assert pauses >= len(body) // blobs.IN_SLICE
    assert len(stored) < len(body) / 4  # repetitive master data compresses well
    compress_pauses, pauses = pauses, 0
    assert await blobs.expand(stored, pause) == body
    assert pauses >= len(body) // blobs.OUT_SLICE - 1
    assert compress_pauses > 0


async def test_incompressible_and_empty_payloads_round_trip() -> None:
    async def pause() -> None:
        return None
    for body in (os.urandom(300_000), b"", b"{}"):
        assert await blobs.expand(await blobs.compress(body, pause), pause) == body


async def test_text_stored_before_compression_reads_back_as_utf8() -> None:
    async def pause() -> None:
        return None
    assert await blobs.expand('{"skus":[{"sku":"Größe"}]}', pause) == '{"skus":[{"sku":"Größe"}]}'.encode()
