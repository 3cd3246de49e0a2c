"""Reads document bytes behind a URI: the claim-check blob store or a guarded http(s) fetch."""

from __future__ import annotations

from ragstream_common.blobs import BLOB_SCHEME, BlobNotFound, BlobStore, blob_key_of

from ragstream_ingest.config import DEFAULT_MAX_DOCUMENT_BYTES
from ragstream_ingest.fetch import FetchError, fetch_url
from ragstream_ingest.ports import RawContent


class BlobTooLargeError(FetchError):
    """A stored document over INGEST_MAX_DOCUMENT_BYTES: refused, like any unreadable content, for good."""

    error_class = "too_large"


class UriContentSource:
    def __init__(
        self,
        blobs: BlobStore,
        *,
        timeout_s: float,
        max_bytes: int,
        allow_private_networks: bool,
        max_blob_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES,
    ) -> None:
        self._blobs = blobs
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._allow_private = allow_private_networks
        self._max_blob_bytes = max_blob_bytes

    async def read(self, tenant_id: str, uri: str) -> RawContent:
        if uri.startswith(BLOB_SCHEME):
            return await self._read_blob(tenant_id, blob_key_of(uri))
        if not uri.lower().startswith(("http://", "https://")):
            raise ValueError(f"unsupported URI scheme in {uri!r}: use blob://, http:// or https://")
        fetched = await fetch_url(
            uri, timeout_s=self._timeout_s, max_bytes=self._max_bytes, allow_private_networks=self._allow_private
        )
        return RawContent(fetched.data, fetched.content_type or "")

    async def _read_blob(self, tenant_id: str, key: str) -> RawContent:
        # Sized first: a blob over the limit is never loaded into memory.
        size = await self._blobs.size(tenant_id, key)
        if size is None:
            raise BlobNotFound(key)
        if size > self._max_blob_bytes:
            raise BlobTooLargeError(f"blob {key} is {size} bytes, over the {self._max_blob_bytes}-byte limit")
        blob = await self._blobs.get(tenant_id, key)
        if blob is None:
            raise BlobNotFound(key)
        return RawContent(blob.data, blob.content_type)
