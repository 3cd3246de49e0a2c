"""Dead-letter queues you can work with: list, inspect and redrive what the consumers dead-lettered.

- `dlq_records`: `DeadLetter` (typed view of one DLQ record), `DeadLetterFilter`, the bounded payload preview.
- `dlq_service`: `DeadLetterService` (list, inspect, idempotent redrive, bulk redrive) over Protocol ports.
- `dlq_store`: the Kafka adapters, `DeadLetterStore` (group-less DLQ reads) and `KafkaRedriveLedger` (the
  compacted `rag.dlq.redrives.v1` topic that makes redrives idempotent; why Kafka and not Postgres is there).
- `dlq_cli`: the operator's command, `python -m ragstream_common.dlq list|show|redrive` (docs/dlq.md).

The admin HTTP API of the gateway (`/v1/admin/dlq`) drives the same service.
"""

from __future__ import annotations

from ragstream_common.dlq_records import DeadLetter, DeadLetterFilter, InspectedDeadLetter, PayloadPreview
from ragstream_common.dlq_service import (
    BulkRedrive,
    DeadLetterNotFound,
    DeadLetterPage,
    DeadLetterService,
    ListedDeadLetter,
    RedriveMark,
    RedriveOutcome,
    TopicDepth,
    UnknownDeadLetterTopic,
)
from ragstream_common.dlq_store import DeadLetterStore, KafkaRedriveLedger, open_dead_letter_service

__all__ = [
    "BulkRedrive",
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterNotFound",
    "DeadLetterPage",
    "DeadLetterService",
    "DeadLetterStore",
    "InspectedDeadLetter",
    "KafkaRedriveLedger",
    "ListedDeadLetter",
    "PayloadPreview",
    "RedriveMark",
    "RedriveOutcome",
    "TopicDepth",
    "UnknownDeadLetterTopic",
    "open_dead_letter_service",
]

if __name__ == "__main__":
    # The command needs typer and rich, which services do not install: imported only when run.
    from ragstream_common.dlq_cli import app

    app()
