"""Embed service settings (env prefix EMBED_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from ragstream_common.config import ServiceSettings
from ragstream_common.grpc_server import GrpcTlsSettings
from ragstream_common.registry import SERVICES
from ragstream_common.service_tokens import TokenSettings

from ragstream_embed.models import EncoderOptions


class EmbedSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EMBED_", extra="ignore")

    service_name: str = "embed"
    grpc_port: int = Field(default=SERVICES["embed"].grpc_port, ge=0, le=65535)
    metrics_port: int = Field(default=SERVICES["embed"].metrics_port, ge=0, le=65535)
    # Document micro-batch: up to N chunks or T ms, whichever comes first.
    batch_max_chunks: int = Field(default=256, ge=1, le=4096)
    batch_max_messages: int = Field(default=256, ge=1, le=4096)
    batch_max_wait_ms: int = Field(default=200, ge=0, le=60_000)
    # Queries must not wait behind batching; a few ms at most.
    query_batch_max: int = Field(default=16, ge=1, le=512)
    # 0: a batch is what arrived while the model was busy; waiting to fill one only delays a lone query.
    query_batch_wait_ms: int = Field(default=0, ge=0, le=50)
    encode_batch_size: int = Field(default=32, ge=1, le=1024)
    # The model (ragstream_embed.models) and how it runs: torch, or ONNX Runtime over the export `make setup`
    # builds (fp32, or int8 weights: 2-3x faster on CPU within the bound benchmarks/README.md states). Changing it
    # makes the index build a generation of it from stored texts (docs/embedding-generations.md).
    model: str = "all-minilm-l6-v2"
    backend: Literal["torch", "onnx", "onnx-int8"] = "onnx-int8"
    # Queries may run another backend than documents ("" = the same).
    query_backend: Literal["", "torch", "onnx", "onnx-int8"] = ""
    # Where the ONNX exports live (None: EMBED_MODEL_DIR's default, ~/.cache/ragstream/models; the image's /app/models).
    model_dir: Path | None = None
    device: str = "cpu"
    # Intra-op threads for document batches; 0 = one per core.
    document_threads: int = Field(default=0, ge=0, le=256)
    # ... and for queries: one core encodes a short query as fast as two, without taking the second core from
    # Kafka, Postgres and the other services (p99 halves on 2 cores; benchmarks/README.md).
    query_threads: int = Field(default=1, ge=0, le=256)
    # How often the models of the index's live and building generations are read (each is served too).
    generations_refresh_s: float = Field(default=5.0, gt=0)
    chunk_group_id: str = "ragstream-embed-chunks"
    query_group_id: str = "ragstream-embed-queries"
    # Unprefixed TOKEN_* (EmbedService verifies tokens; embed mints none) and GRPC_TLS_*.
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    grpc_tls: GrpcTlsSettings = Field(default_factory=GrpcTlsSettings)

    def encoder_options(self) -> EncoderOptions:
        return EncoderOptions(
            model=self.model,
            backend=self.backend,
            query_backend=self.query_backend,
            batch_size=self.encode_batch_size,
            document_threads=self.document_threads,
            query_threads=self.query_threads,
            device=self.device,
            model_dir=self.model_dir,
        )
