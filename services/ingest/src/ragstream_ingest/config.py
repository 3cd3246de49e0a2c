"""Ingest service settings (env prefix INGEST_; the blob store reads the shared, unprefixed BLOB_*)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict
from ragstream_common.blob_settings import BlobStoreSettings
from ragstream_common.config import ServiceSettings
from ragstream_common.registry import SERVICES

# The largest stored document ingest will load: a connector may store big files (streamed, in parts), but
# extraction holds a document in memory.
DEFAULT_MAX_DOCUMENT_BYTES = 100 * 1024 * 1024


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    service_name: str = "ingest"
    grpc_port: int = Field(default=SERVICES["ingest"].grpc_port, ge=0, le=65535)
    metrics_port: int = Field(default=SERVICES["ingest"].metrics_port, ge=0, le=65535)
    group_id: str = "ragstream-ingest"
    max_batch: int = Field(default=16, ge=1, le=1024)
    # Chunk window in content tokens; the model sees at most 256 including [CLS] and [SEP].
    chunk_max_tokens: int = Field(default=200, ge=16, le=254)
    chunk_overlap_tokens: int = Field(default=40, ge=0, le=127)
    fetch_timeout_s: float = Field(default=15.0, gt=0)
    fetch_max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    # A larger `blob://` document fails permanently (DocumentFailed "too_large") before it is read.
    max_document_bytes: int = Field(default=DEFAULT_MAX_DOCUMENT_BYTES, gt=0)
    # Only for local development: lets http(s) URIs point at private addresses.
    fetch_allow_private_networks: bool = False
    # Shared with the gateway (unprefixed BLOB_* variables): ingest reads where the gateway writes.
    blobs: BlobStoreSettings = Field(default_factory=BlobStoreSettings)

    @model_validator(mode="after")
    def _overlap_fits_window(self) -> Self:
        if self.chunk_overlap_tokens > self.chunk_max_tokens // 2:
            raise ValueError("INGEST_CHUNK_OVERLAP_TOKENS must be at most half of INGEST_CHUNK_MAX_TOKENS")
        return self
