"""Postgres pool and transaction metrics.

Pool gauges come from psycopg_pool's own `get_stats()`, read at scrape time by one collector that every pool
joins when `db.create_pool` makes it (no polling task, nothing to stop). Pools are grouped by name; several
pools of one name in one process (tests run many services) are summed.

Query latency is measured per `tenant_transaction` (connection wait, statements and commit): every service
query runs in one, and a per-statement hook would cost a timer per statement for little more insight.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

QUERY_SECONDS = Histogram(
    "ragstream_db_query_seconds",
    "Duration of one tenant-scoped transaction, from asking the pool for a connection to its commit",
    ["pool"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# The pool gauge's states, from get_stats(): in_use = open connections lent out, idle = open and available,
# waiting = requests queued for a connection.
STATES = ("in_use", "idle", "waiting")


def pool_figures(stats: Mapping[str, int]) -> dict[str, int]:
    """The exported figures of one pool's `get_stats()` (absent keys count as zero)."""
    size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
    return {
        "in_use": max(size - available, 0),
        "idle": available,
        "waiting": stats.get("requests_waiting", 0),
        "max": stats.get("pool_max", 0),
        "wait_ms": stats.get("requests_wait_ms", 0),
    }


class PoolCollector(Collector):
    """`ragstream_db_pool_*` of the live, open pools it tracks (weakly: a dropped pool leaves the scrape)."""

    def __init__(self) -> None:
        self._pools: weakref.WeakSet[AsyncConnectionPool] = weakref.WeakSet()

    def track(self, pool: AsyncConnectionPool) -> None:
        self._pools.add(pool)

    def collect(self) -> Iterable[Any]:
        totals: dict[str, dict[str, int]] = {}
        for pool in list(self._pools):
            if pool.closed:
                continue
            figures = pool_figures(pool.get_stats())
            summed = totals.setdefault(pool.name, dict.fromkeys(figures, 0))
            for key, value in figures.items():
                summed[key] += value
        connections = GaugeMetricFamily(
            "ragstream_db_pool_connections",
            "Pool connections by state: in_use, idle, waiting",
            labels=["pool", "state"],
        )
        size = GaugeMetricFamily("ragstream_db_pool_size", "Most connections the pool may open", labels=["pool"])
        waited = CounterMetricFamily(
            "ragstream_db_pool_wait_seconds", "Time requests spent waiting for a pool connection", labels=["pool"]
        )
        for name, figures in sorted(totals.items()):
            for state in STATES:
                connections.add_metric([name, state], figures[state])
            size.add_metric([name], figures["max"])
            waited.add_metric([name], figures["wait_ms"] / 1000)
        return [connections, size, waited]


POOLS = PoolCollector()
REGISTRY.register(POOLS)


def track_pool(pool: AsyncConnectionPool) -> None:
    """Export `pool`'s gauges from now on, labelled with its name (its transactions' durations too)."""
    POOLS.track(pool)
    QUERY_SECONDS.labels(pool.name)
