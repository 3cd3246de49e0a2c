"""What the ingest handlers need from the outside world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RawContent:
    data: bytes
    content_type: str


class ContentSource(Protocol):
    async def read(self, tenant_id: str, uri: str) -> RawContent:
        """Bytes behind a `blob://` or http(s) URI; raises FetchError or BlobNotFound."""
        ...
