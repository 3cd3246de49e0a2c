"""Usage windows, the pure part of metering: what one tumbling minute of one tenant holds and totals.

A window keeps each fact's quantities under its usage id (`{usage_id: {metric: quantity}}`), not running sums: a
usage id seen again (a redelivered source event, a replay after a crash) replaces itself and adds nothing, and the
window's totals are always recomputed from distinct facts, so writing them twice is harmless.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from ragstream_common.usage_records import USAGE_METRICS

# The metrics usage_minutes accepts (migration 0012_usage.sql) and GET /v1/usage reports.
METRICS = USAGE_METRICS
WINDOW_S = 60
# A tenant's window is split into this many parts by usage id, each a table key of its own: faust writes a key's
# whole value to the changelog at every change, so a part's record (and the bytes rewritten per fact) stays
# 1/SHARDS of the window's. Fixed: changing it would move a usage id to another part, where a redelivery of
# it would count again.
SHARDS = 16

Window = dict[str, dict[str, int]]
Totals = dict[str, int]


def window_start(occurred_at_s: float) -> float:
    """The start (epoch seconds) of the one-minute window a fact that happened at `occurred_at_s` falls in."""
    return float(int(occurred_at_s // WINDOW_S) * WINDOW_S)


def as_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def shard_key(tenant_id: str, usage_id: str) -> str:
    """The table key of the part of `tenant_id`'s windows that holds `usage_id`."""
    return f"{tenant_id}|{zlib.crc32(usage_id.encode()) % SHARDS}"


def tenant_of(shard: str) -> str:
    return shard.rpartition("|")[0]


def known_quantities(quantities: Mapping[str, int]) -> dict[str, int]:
    """The quantities of known metrics, positive only (a producer's typo or a zero must not create a row)."""
    return {metric: int(value) for metric, value in quantities.items() if metric in METRICS and value > 0}


def with_usage(window: Mapping[str, Mapping[str, int]], usage_id: str, quantities: Mapping[str, int]) -> Window | None:
    """`window` with the fact added, or None when it adds nothing (its usage id is already counted)."""
    if usage_id in window:
        return None
    # A shallow copy: the facts already in the window are never changed, only joined by new ones.
    return {**window, usage_id: dict(quantities)}  # type: ignore[dict-item]


def totals(window: Mapping[str, Mapping[str, int]]) -> Totals:
    """Sum per metric over the window's distinct facts (metrics with nothing counted are left out)."""
    return summed(window.values())


def summed(parts: Iterable[Mapping[str, int]]) -> Totals:
    """The totals of a window from the totals of its parts."""
    result: Totals = {}
    for part in parts:
        for metric, value in part.items():
            result[metric] = result.get(metric, 0) + value
    return result
