"""Retrieve service settings (env prefix RETRIEVE_)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict
from ragstream_common.config import ServiceSettings
from ragstream_common.grpc_server import GrpcTlsSettings
from ragstream_common.registry import SERVICES
from ragstream_common.reply_targets import ReplyTargetSettings
from ragstream_common.service_tokens import TokenSettings

from ragstream_retrieve.lexical import Bm25Parameters
from ragstream_retrieve.models import FusionMethod, HnswSettings, ScoreNormalization, SearchTuning


class RetrieveSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RETRIEVE_", extra="ignore")

    service_name: str = "retrieve"
    grpc_port: int = Field(default=SERVICES["retrieve"].grpc_port, ge=0, le=65535)
    metrics_port: int = Field(default=SERVICES["retrieve"].metrics_port, ge=0, le=65535)
    db_pool_size: int = Field(default=8, ge=2, le=128)

    # Indexer: documents are written one transaction each, up to `index_concurrency` documents at a time.
    index_group_id: str = "ragstream-retrieve-indexer"
    index_batch_max: int = Field(default=32, ge=1, le=1024)
    index_batch_wait_ms: int = Field(default=50, ge=0, le=60_000)
    index_concurrency: int = Field(default=4, ge=1, le=64)
    # The query vector size when no generation is known (the live generation's size decides otherwise).
    embedding_dimensions: int = Field(default=384, ge=1)
    # Embedding generations (docs/embedding-generations.md): how long a read of them serves queries, and the
    # background re-embedding (a generation for the embed service's EMBED_MODEL, built from stored texts).
    generations_cache_s: float = Field(default=1.0, ge=0, le=60)
    reembed_enabled: bool = True
    reembed_interval_s: float = Field(default=5.0, gt=0)
    reembed_batch_size: int = Field(default=128, ge=1, le=512)
    reembed_timeout_s: float = Field(default=60.0, gt=0)

    # Queries: never wait to fill a batch.
    query_group_id: str = "ragstream-retrieve-queries"
    query_batch_max: int = Field(default=16, ge=1, le=512)
    query_batch_wait_ms: int = Field(default=0, ge=0, le=50)
    # Replies go straight to the gateway instance a query names: one cached channel per instance address.
    reply_timeout_s: float = Field(default=2.0, gt=0)
    reply_max_channels: int = Field(default=64, ge=1, le=4096)
    # REPLY_ALLOWED_TARGETS: the only reply_to addresses dialled (empty: none).
    reply_targets: ReplyTargetSettings = Field(default_factory=ReplyTargetSettings)
    # TOKEN_*: RetrieveService verifies tokens; retrieve mints them for embed and for its replies.
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    grpc_tls: GrpcTlsSettings = Field(default_factory=GrpcTlsSettings)

    # RetrieveService.Search embeds query texts through the embed service.
    embed_address: str = "127.0.0.1:50052"
    embed_timeout_s: float = Field(default=5.0, gt=0)

    # Search.
    default_top_k: int = Field(default=8, ge=1, le=1000)
    max_top_k: int = Field(default=100, ge=1, le=1000)
    candidate_depth: int = Field(default=100, ge=1, le=10_000)
    # Hybrid fusion: convex combination of per-query min-max (or z-score) normalised scores, or weighted RRF.
    # Chosen on SciFact (README, "Fusion"); the weights apply to both (convex: alpha = dense / (dense + lexical)).
    fusion: FusionMethod = "convex"
    score_normalization: ScoreNormalization = "minmax"
    rrf_k: float = Field(default=60.0, ge=0)
    dense_weight: float = Field(default=1.0, ge=0)
    lexical_weight: float = Field(default=1.0, ge=0)
    dedupe_cosine: float = Field(default=0.98, gt=0, le=1.0)
    bm25_k1: float = Field(default=1.2, ge=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000)
    hnsw_iterative_scan: Literal["off", "relaxed_order", "strict_order"] = "relaxed_order"
    hnsw_max_scan_tuples: int = Field(default=20_000, ge=1)

    @model_validator(mode="after")
    def _some_fusion_weight(self) -> Self:
        if self.dense_weight + self.lexical_weight <= 0:
            raise ValueError("RETRIEVE_DENSE_WEIGHT and RETRIEVE_LEXICAL_WEIGHT must not both be 0")
        return self

    def search_tuning(self) -> SearchTuning:
        return SearchTuning(
            candidate_depth=self.candidate_depth,
            fusion=self.fusion,
            score_normalization=self.score_normalization,
            rrf_k=self.rrf_k,
            dense_weight=self.dense_weight,
            lexical_weight=self.lexical_weight,
            dedupe_cosine=self.dedupe_cosine,
            bm25=Bm25Parameters(k1=self.bm25_k1, b=self.bm25_b),
        )

    def hnsw(self) -> HnswSettings:
        return HnswSettings(self.hnsw_ef_search, self.hnsw_iterative_scan, self.hnsw_max_scan_tuples)
