"""Documents by status per tenant (issue 13): the gauge `ragstream_documents{tenant_id,status}`, refreshed by a
periodic task of the gateway from counts the store reads across tenants (adapters/document_counts_pg.py).

Cardinality is bounded by configuration: tenants listed in GATEWAY_METRICS_TENANT_LABELS get their own series,
every other tenant is summed under tenant_id="_other", and statuses are the registry's fixed set. Every series
of that grid is set on each round (zero included), so a count that drops to nothing reads 0, not a stale value.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, get_args

from prometheus_client import Gauge
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

from ragstream_gateway.ports import DocumentStatus

log = get_logger(__name__)

DOCUMENT_STATUSES: tuple[str, ...] = get_args(DocumentStatus)
OTHER_TENANTS = "_other"

DOCUMENTS = Gauge(
    "ragstream_documents",
    'Documents by status, per tenant listed in GATEWAY_METRICS_TENANT_LABELS; all others under tenant_id="_other"',
    ["tenant_id", "status"],
)


@dataclass(frozen=True)
class StatusCount:
    tenant_id: str
    status: str
    count: int


class DocumentCounts(Protocol):
    """Where documents are registered, read across tenants (adapters/document_counts_pg.py)."""

    async def status_counts(self) -> list[StatusCount]:
        """One row per tenant and status with documents in it."""
        ...


def group_counts(counts: Iterable[StatusCount], labelled_tenants: frozenset[str]) -> dict[tuple[str, str], int]:
    """The gauge's grid, (listed tenants + "_other") x statuses, each cell the sum of the counts that fall in it.

    A status outside the registry's set (none: the table's CHECK forbids it) is left out rather than widening
    the label set."""
    grid = {(tenant, status): 0 for tenant in (*labelled_tenants, OTHER_TENANTS) for status in DOCUMENT_STATUSES}
    for row in counts:
        tenant = row.tenant_id if row.tenant_id in labelled_tenants else OTHER_TENANTS
        if (tenant, row.status) in grid:
            grid[tenant, row.status] += row.count
    return grid


async def refresh_document_counts(
    store: DocumentCounts, labelled_tenants: Iterable[str], stop: asyncio.Event, interval_s: float
) -> None:
    """Keep `ragstream_documents` current every `interval_s` until `stop`; a failed round is logged and retried at
    the next one (the gauge keeps the last counts meanwhile)."""
    labelled = frozenset(labelled_tenants)
    while not stop.is_set():
        try:
            counts = await store.status_counts()
        except Exception as exc:
            log.error("document counts not refreshed", error=repr(exc))
        else:
            for (tenant, status), count in group_counts(counts, labelled).items():
                DOCUMENTS.labels(tenant, status).set(count)
        await sleep_or_stop(stop, interval_s)
