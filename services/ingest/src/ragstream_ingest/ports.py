"""What the ingest handlers need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ragstream_common.kafka import OutgoingEvent


@dataclass(frozen=True)
class RawContent:
    data: bytes
    content_type: str


class ContentSource(Protocol):
    async def read(self, tenant_id: str, uri: str) -> RawContent:
        """Bytes behind a `blob://` or http(s) URI; raises FetchError or BlobNotFound."""
        ...


class EventSink(Protocol):
    async def publish_many(self, events: Sequence[OutgoingEvent]) -> None: ...
