"""The intake bridge: tenants' own Kafka topics onto the internal pipeline, the tenant taken from the topic name.

Only tenant `<id>`'s principal may write `rag.tenant.<id>.documents.v1` and `rag.tenant.<id>.queries.v1` (ACLs
granted at provisioning), so a topic name is what the writer's credential vouches for; a tenant id inside the
payload is only a claim. For each record:

- the payload's `tenant_id` must be empty or the topic's tenant; otherwise `TenantMismatch` (a PermanentError:
  the record goes to `<topic>.dlq`, error class `TenantMismatch`, message `tenant-mismatch: ...`);
- the event is forwarded with the topic's tenant stamped, under its original CloudEvents id, so a redelivered
  record is the same event downstream (at least once; every consumer is idempotent);
- a query's `reply_to` is cleared: a Kafka caller's answer goes to its own answers topic, and no Kafka caller
  may make a worker dial an address;
- an event type the topic does not carry is a PermanentError (the topic is not in the declared topic table,
  so the consumer cannot refuse it while decoding);
- a disabled tenant's events are `TenantDisabled` (PermanentError, message `tenant-disabled: ...`): dead-lettered,
  so they can be redriven once the tenant is enabled again;
- questions, searches and document versions go out with their usage records (metering), ids and times taken from
  the events, as for the HTTP API's.

Every record of a batch is checked before any is forwarded, so a failing batch forwards nothing; the consumer
then retries its events one by one and dead-letters only the bad one.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from google.protobuf.message import Message
from opentelemetry import context as otel_context
from prometheus_client import Counter
from rag.v1 import documents_pb2, queries_pb2
from ragstream_common.events import Envelope, PermanentError
from ragstream_common.kafka.tenant_topics import IntakeKind, intake_topic

from ragstream_gateway.documents import ingested_usage
from ragstream_gateway.query.service import query_usage

IntakeEvent: TypeAlias = (
    documents_pb2.DocumentReceived
    | documents_pb2.DocumentUpdated
    | documents_pb2.DocumentDeleted
    | queries_pb2.QueryRequested
)
_CARRIED: dict[IntakeKind, tuple[type[Message], ...]] = {
    "documents": (documents_pb2.DocumentReceived, documents_pb2.DocumentUpdated, documents_pb2.DocumentDeleted),
    "queries": (queries_pb2.QueryRequested,),
}

FORWARDED = Counter(
    "ragstream_gateway_intake_forwarded_total", "Tenant intake events forwarded onto the pipeline", ["kind"]
)
REPLY_TO_DROPPED = Counter(
    "ragstream_gateway_intake_reply_to_dropped_total", "Kafka queries whose reply_to the intake bridge cleared"
)


class TenantMismatch(PermanentError):
    """The payload names another tenant than the topic it was written to."""

    reason = "tenant-mismatch"


class TenantDisabled(PermanentError):
    """The topic's tenant is disabled (PATCH /v1/admin/tenants/{id})."""

    reason = "tenant-disabled"


class TenantGate(Protocol):
    async def tenant_disabled(self, tenant_id: str) -> bool: ...


@dataclass(frozen=True)
class Forwarded:
    """One intake event as it goes onto the pipeline: the stamped message under its original CloudEvents id."""

    message: Message
    event_id: str
    source: str
    context: otel_context.Context


class IntakeSink(Protocol):
    """Puts forwarded events on the internal topics, each one's in order; returns once all are acknowledged."""

    async def forward(self, events: Sequence[Forwarded]) -> None: ...


async def bridge_intake(
    batch: Sequence[Envelope[IntakeEvent]], sink: IntakeSink, gate: TenantGate | None = None
) -> None:
    forwarded = [forwarded_event(envelope) for envelope in batch]
    if gate is not None:
        tenants = {intake.tenant_id for envelope in batch if (intake := intake_topic(envelope.topic)) is not None}
        for tenant_id in sorted(tenants):
            if await gate.tenant_disabled(tenant_id):
                raise TenantDisabled(f"{TenantDisabled.reason}: tenant {tenant_id!r} is disabled")
    await sink.forward([*forwarded, *(usage for event in forwarded if (usage := _usage(event)) is not None)])
    for envelope, event in zip(batch, forwarded, strict=True):
        FORWARDED.labels("queries" if isinstance(event.message, queries_pb2.QueryRequested) else "documents").inc()
        if isinstance(envelope.message, queries_pb2.QueryRequested) and envelope.message.reply_to:
            REPLY_TO_DROPPED.inc()


def _usage(event: Forwarded) -> Forwarded | None:
    """The usage record a forwarded event carries (none for a delete), under an id derived from the event's."""
    message = event.message
    if isinstance(message, queries_pb2.QueryRequested):
        usage: Message = query_usage(message)
    elif isinstance(message, documents_pb2.DocumentReceived | documents_pb2.DocumentUpdated):
        usage = ingested_usage(message)
    else:
        return None
    return Forwarded(usage, f"{event.event_id}:usage", event.source, event.context)


def forwarded_event(envelope: Envelope[IntakeEvent]) -> Forwarded:
    """The pipeline event for one intake record; PermanentError (TenantMismatch among them) when there is none."""
    intake = intake_topic(envelope.topic)
    if intake is None:
        raise PermanentError(f"{envelope.topic} is not a tenant intake topic")
    message = envelope.message
    if not isinstance(message, _CARRIED[intake.kind]):
        raise PermanentError(f"{envelope.event_type} is not accepted on {envelope.topic}")
    if message.tenant_id and message.tenant_id != intake.tenant_id:
        raise TenantMismatch(
            f"{TenantMismatch.reason}: {envelope.topic} belongs to tenant {intake.tenant_id!r},"
            f" the event names {message.tenant_id!r}"
        )
    stamped = copy.deepcopy(message)
    stamped.tenant_id = intake.tenant_id
    if isinstance(stamped, queries_pb2.QueryRequested):
        stamped.ClearField("reply_to")
    return Forwarded(stamped, envelope.event_id, envelope.source, envelope.trace_context)
