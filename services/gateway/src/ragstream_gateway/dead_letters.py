"""The admin's dead-letter operations: what the DLQ routes need (a port) and the redrives they audit.

The port is satisfied by `ragstream_common.dlq_service.DeadLetterService` (wired in `adapters/dlq_kafka.py`);
the routes never see Kafka. Every redrive, including one refused as already done, lands in the audit log of the
event's tenant, or of `DLQ_AUDIT_TENANT` when the event cannot be decoded.
"""

from __future__ import annotations

from typing import Protocol

from ragstream_common.dlq_records import DeadLetterFilter, InspectedDeadLetter
from ragstream_common.dlq_service import (
    BulkRedrive,
    DeadLetterPage,
    OutcomeCallback,
    RedriveMark,
    RedriveOutcome,
    TopicDepth,
)

from ragstream_gateway.ports import AuditEntry, AuditLog

# Audit log of redrives whose event names no tenant (undecodable records).
DLQ_AUDIT_TENANT = "_dlq"
REDRIVE_ACTION = "dlq.redrive"


class DeadLetterOperations(Protocol):
    async def depths(self) -> list[TopicDepth]: ...

    async def list_page(self, topic: str, where: DeadLetterFilter, *, offset: int, limit: int) -> DeadLetterPage: ...

    async def inspect(self, topic: str, offset: int) -> tuple[InspectedDeadLetter, RedriveMark | None]: ...

    async def redrive(self, topic: str, offset: int, actor: str) -> RedriveOutcome: ...

    async def redrive_matching(
        self,
        topic: str,
        where: DeadLetterFilter,
        actor: str,
        *,
        offset: int,
        limit: int | None,
        on_outcome: OutcomeCallback | None,
    ) -> BulkRedrive: ...


async def redrive_one(
    dead_letters: DeadLetterOperations, audit: AuditLog, topic: str, offset: int, actor: str, client_ip: str
) -> RedriveOutcome:
    outcome = await dead_letters.redrive(topic, offset, actor)
    await audit.record(audit_entry(outcome, actor, client_ip))
    return outcome


async def redrive_matching(
    dead_letters: DeadLetterOperations,
    audit: AuditLog,
    topic: str,
    where: DeadLetterFilter,
    actor: str,
    client_ip: str,
    *,
    offset: int,
    limit: int | None,
) -> BulkRedrive:
    async def audited(outcome: RedriveOutcome) -> None:
        await audit.record(audit_entry(outcome, actor, client_ip, bulk=True))

    # Audited one by one as they happen: a failure halfway leaves the done part on record.
    return await dead_letters.redrive_matching(topic, where, actor, offset=offset, limit=limit, on_outcome=audited)


def audit_entry(outcome: RedriveOutcome, actor: str, client_ip: str, *, bulk: bool = False) -> AuditEntry:
    letter = outcome.letter
    return AuditEntry(
        letter.tenant_id or DLQ_AUDIT_TENANT,
        actor,
        REDRIVE_ACTION,
        letter.ledger_key,
        client_ip,
        {
            "status": outcome.status,
            "bulk": bulk,
            "target_topic": outcome.mark.target_topic,
            "event_type": letter.event_type,
            "event_id": letter.event_id,
            "reason_class": letter.reason_class,
            "consumer_group": letter.consumer_group,
        },
    )
