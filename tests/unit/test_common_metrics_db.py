"""The Postgres pool collector: psycopg_pool's get_stats() as labelled gauges, summed per pool name."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from ragstream_common.db_metrics import PoolCollector, pool_figures

pytestmark = pytest.mark.unit


class PoolStats:
    """What the collector reads of a psycopg_pool pool: its name, whether it is closed, its stats."""

    def __init__(self, name: str, stats: dict[str, int], closed: bool = False) -> None:
        self.name, self.closed, self._stats = name, closed, stats

    def get_stats(self) -> dict[str, int]:
        return dict(self._stats)


def test_figures_from_stats() -> None:
    stats = {"pool_max": 8, "pool_size": 5, "pool_available": 2, "requests_waiting": 3, "requests_wait_ms": 1500}
    assert pool_figures(stats) == {"in_use": 3, "idle": 2, "waiting": 3, "max": 8, "wait_ms": 1500}
    assert pool_figures({}) == {"in_use": 0, "idle": 0, "waiting": 0, "max": 0, "wait_ms": 0}


def test_collector_exports_open_pools_summed_by_name() -> None:
    collector = PoolCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    pools: list[Any] = [
        PoolStats("retrieve", {"pool_max": 8, "pool_size": 4, "pool_available": 1, "requests_wait_ms": 250}),
        PoolStats("retrieve", {"pool_max": 4, "pool_size": 2, "pool_available": 2, "requests_waiting": 1}),
        PoolStats("gateway", {"pool_max": 2, "pool_size": 2, "pool_available": 0}),
        PoolStats("closed", {"pool_max": 2}, closed=True),
    ]
    for pool in pools:
        collector.track(pool)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("ragstream_db_pool_connections", pool="retrieve", state="in_use") == 3
    assert value("ragstream_db_pool_connections", pool="retrieve", state="idle") == 3
    assert value("ragstream_db_pool_connections", pool="retrieve", state="waiting") == 1
    assert value("ragstream_db_pool_size", pool="retrieve") == 12
    assert value("ragstream_db_pool_wait_seconds_total", pool="retrieve") == 0.25
    assert value("ragstream_db_pool_connections", pool="gateway", state="in_use") == 2
    assert value("ragstream_db_pool_size", pool="closed") is None


def test_a_dropped_pool_leaves_the_scrape() -> None:
    collector = PoolCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    pool: Any = PoolStats("short-lived", {"pool_max": 1})
    collector.track(pool)
    assert registry.get_sample_value("ragstream_db_pool_size", {"pool": "short-lived"}) == 1
    del pool
    assert registry.get_sample_value("ragstream_db_pool_size", {"pool": "short-lived"}) is None
