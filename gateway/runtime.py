"""Interpreter settings for the gateway process (set once in `App.run`; the benches call the same function so
that they measure what production runs)."""

from __future__ import annotations

import gc
import sys

# The journal's writer, the serial readers and paho run in threads that take the GIL back after every SQLite
# step or read; with the default 5 ms switch interval each such hand-back waits up to 5 ms behind a busy event
# loop (a 50-row commit measured 165 ms beside a busy thread). 0.5 ms keeps a scan's commit short while bulk
# work keeps the loop busy; the cost is a little more switching.
SWITCH_INTERVAL_S = 0.0005

# Every journalled change allocates some 20 container objects (the change, its event, rows, a future, a task
# step); at CPython's default of 700 a young collection ran every ~35 events and took a quarter of the
# journal's time per event (bench.journal_append: 38 -> 29 us per event at 20,000). Most of those objects
# die by reference count before a collection at 20,000 sees them. The long-lived floor is frozen out of the
# collector's sight anyway (service.settle_heap), so the older generations keep their defaults.
GC_YOUNG_THRESHOLD = 20_000


def tune() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
