"""Fakes of the ingest handlers' ports."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragstream_common.blobs import BlobNotFound
from ragstream_ingest.ports import RawContent


@dataclass
class DictContentSource:
    """`ContentSource` over a dict of URI -> content; a missing `blob://` URI raises BlobNotFound, and an entry
    that is an exception is raised (a fetch error)."""

    contents: dict[str, RawContent | Exception] = field(default_factory=dict)

    async def read(self, tenant_id: str, uri: str) -> RawContent:
        found = self.contents.get(f"{tenant_id}:{uri}")
        if found is None:
            raise BlobNotFound(uri)
        if isinstance(found, Exception):
            raise found
        return found
