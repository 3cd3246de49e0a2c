"""Usage facts for metering: one `rag.v1.UsageRecorded` per billable fact, published to rag.usage.recorded.v1 by tenant.

A fact is identified by `usage_id`, derived from the event that caused it (`<query id>:question`,
`<source event id>:chunks`), and dated by that event's own time, never by when it is (re)published: a
redelivered source event then yields the very same record, which metering counts once (its windows keep facts
by usage id). Services emit it beside the event it accompanies, in the same `sink.emit` call.
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from rag.v1 import usage_pb2

from ragstream_common.messages import now_timestamp

# The metrics metering counts, in the order GET /v1/usage reports them (usage.proto; migration 0012_usage.sql
# accepts exactly these). The one list: the gateway's usage API and the metering service import it.
USAGE_METRICS: tuple[str, ...] = (
    "questions",
    "searches",
    "documents_ingested",
    "bytes_ingested",
    "chunks_embedded",
    "tokens_in",
    "tokens_out",
    "connector_items_synced",
)


def usage_record(
    tenant_id: str, usage_id: str, source: str, *, occurred_at: Timestamp | datetime | None = None, **quantities: int
) -> usage_pb2.UsageRecorded:
    """The fact `usage_id` of `tenant_id` adding `quantities` (zeros left out), recorded by service `source`.

    `occurred_at` is the causing event's time (now for a fact that happens here, at the call)."""
    unknown = quantities.keys() - USAGE_METRICS
    if unknown:
        raise ValueError(f"unknown usage metrics: {sorted(unknown)}")
    record = usage_pb2.UsageRecorded(
        tenant_id=tenant_id,
        usage_id=usage_id,
        source=source,
        quantities={metric: quantity for metric, quantity in quantities.items() if quantity},
    )
    record.occurred_at.CopyFrom(_timestamp(occurred_at))
    return record


def _timestamp(occurred_at: Timestamp | datetime | None) -> Timestamp:
    if occurred_at is None or (isinstance(occurred_at, Timestamp) and not occurred_at.ByteSize()):
        return now_timestamp()
    if isinstance(occurred_at, Timestamp):
        return occurred_at
    stamp = Timestamp()
    stamp.FromDatetime(occurred_at)
    return stamp
