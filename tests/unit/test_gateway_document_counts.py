"""`ragstream_documents{tenant_id,status}`: listed tenants keep their own series, all others are summed under
"_other", every status of the registry is present (zero included), and the periodic refresh keeps it current."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.document_metrics import (
    DOCUMENT_STATUSES,
    OTHER_TENANTS,
    StatusCount,
    group_counts,
    refresh_document_counts,
)

pytestmark = pytest.mark.unit


def documents(tenant_id: str, status: str) -> float | None:
    return REGISTRY.get_sample_value("ragstream_documents", {"tenant_id": tenant_id, "status": status})


class Counts:
    """The store's rows, changed between rounds; `fail` makes the next round raise."""

    def __init__(self, rows: list[StatusCount]) -> None:
        self.rows, self.fail, self.rounds = rows, False, 0

    async def status_counts(self) -> list[StatusCount]:
        self.rounds += 1
        if self.fail:
            raise ConnectionError("postgres down")
        return list(self.rows)


def test_unlisted_tenants_are_summed_under_other_and_every_status_is_present() -> None:
    rows = [
        StatusCount("acme", "indexed", 5),
        StatusCount("acme", "failed", 1),
        StatusCount("beta", "indexed", 3),
        StatusCount("gamma", "indexed", 4),
        StatusCount("gamma", "received", 2),
    ]
    grid = group_counts(rows, frozenset({"acme"}))
    assert set(grid) == {(tenant, status) for tenant in ("acme", OTHER_TENANTS) for status in DOCUMENT_STATUSES}
    assert grid["acme", "indexed"] == 5 and grid["acme", "failed"] == 1 and grid["acme", "processing"] == 0
    assert grid[OTHER_TENANTS, "indexed"] == 7 and grid[OTHER_TENANTS, "received"] == 2


def test_no_listed_tenants_puts_everyone_under_other_and_unknown_statuses_are_left_out() -> None:
    grid = group_counts([StatusCount("acme", "indexed", 5), StatusCount("acme", "archived", 9)], frozenset())
    assert {tenant for tenant, _ in grid} == {OTHER_TENANTS}
    assert grid[OTHER_TENANTS, "indexed"] == 5 and sum(grid.values()) == 5


def test_the_tenant_label_list_is_read_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_METRICS_TENANT_LABELS", "acme, beta,")
    assert GatewaySettings().metrics_tenant_labels == ["acme", "beta"]
    monkeypatch.setenv("GATEWAY_METRICS_TENANT_LABELS", "")
    assert GatewaySettings().metrics_tenant_labels == []
    for refused in ("_other", "not a tenant"):
        monkeypatch.setenv("GATEWAY_METRICS_TENANT_LABELS", refused)
        with pytest.raises(ValidationError):
            GatewaySettings()


async def test_the_refresh_sets_the_gauge_each_round_and_keeps_it_through_a_failed_round() -> None:
    tenant = "docmetrics-refresh"
    store = Counts([StatusCount(tenant, "indexed", 4), StatusCount(tenant, "received", 1)])
    stop = asyncio.Event()
    task = asyncio.create_task(refresh_document_counts(store, [tenant], stop, interval_s=0.01))
    await until(lambda: documents(tenant, "indexed") == 4)
    assert documents(tenant, "received") == 1 and documents(tenant, "deleted") == 0

    store.rows = [StatusCount(tenant, "indexed", 5)]  # the received one got indexed
    await until(lambda: documents(tenant, "indexed") == 5)
    assert documents(tenant, "received") == 0

    store.fail, rounds = True, store.rounds
    await until(lambda: store.rounds >= rounds + 2)
    assert documents(tenant, "indexed") == 5  # the last counts stay while Postgres is away
    stop.set()
    await asyncio.wait_for(task, timeout=1)


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout_s)
