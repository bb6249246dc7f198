"""What every fuzz test shares: one hypothesis profile, so a CI run tries exactly the same inputs every time
(derandomized, no example database that would make one machine's run differ from another's), and random JSON.

Examples run against real parts (SQLite journal, ptys, pipes), so each costs milliseconds: the counts are
chosen to keep `pytest tests/fuzz` near a minute on a two-core box, not to be exhaustive. A developer hunting
bugs can raise them with FLOORGATE_FUZZ_SCALE (e.g. 10) and a random seed with FLOORGATE_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

SCALE = max(float(os.environ.get("FLOORGATE_FUZZ_SCALE", "1")), 0.01)
RANDOM = os.environ.get("FLOORGATE_FUZZ_RANDOM", "") == "1"


def fuzz_settings(examples: int) -> settings:
    """Fixed-size and reproducible unless asked otherwise; no deadline (a commit's fsync is not ours to time)."""
    return settings(max_examples=max(int(examples * SCALE), 1), deadline=None, database=None,
                    derandomize=not RANDOM, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


# Text that breaks naive handling: controls, NUL, surrogate-free astral characters, RTL marks, long runs.
nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "\x1d", "\r\n", "\\", '"', "\u202e", "\U0001f4a9", "null", "NaN",
                     "../../etc/passwd", "%s%n", "{}", "[]", "\ufeff", "a" * 300]),
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), nasty_text,
)


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value (no NaN: the JSON text itself may still carry NaN/Infinity, see the encodings)."""
    return st.recursive(json_scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)), max_leaves=max_leaves)
