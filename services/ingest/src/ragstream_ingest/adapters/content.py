"""Reads document bytes behind a URI: the claim-check blob store or a guarded http(s) fetch."""

from __future__ import annotations

from ragstream_common.blobs import BLOB_SCHEME, BlobNotFound, BlobStore, blob_key_of

from ragstream_ingest.fetch import fetch_url
from ragstream_ingest.ports import RawContent


class UriContentSource:
    def __init__(self, blobs: BlobStore, *, timeout_s: float, max_bytes: int, allow_private_networks: bool) -> None:
        self._blobs = blobs
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._allow_private = allow_private_networks

    async def read(self, tenant_id: str, uri: str) -> RawContent:
        if uri.startswith(BLOB_SCHEME):
            key = blob_key_of(uri)
            blob = await self._blobs.get(tenant_id, key)
            if blob is None:
                raise BlobNotFound(key)
            return RawContent(blob.data, blob.content_type)
        if not uri.lower().startswith(("http://", "https://")):
            raise ValueError(f"unsupported URI scheme in {uri!r}: use blob://, http:// or https://")
        fetched = await fetch_url(
            uri, timeout_s=self._timeout_s, max_bytes=self._max_bytes, allow_private_networks=self._allow_private
        )
        return RawContent(fetched.data, fetched.content_type or "")
