"""The query path without the system around it: embed, search and extract in one process, for a baseline.

Uses the services' own code and settings: the embed service's SentenceTransformerEncoder (encode batch size from
EmbedSettings), the retrieve service's hybrid_search over PostgresSearchIndex with RetrieveSettings' tuning,
HNSW settings and top-k limits (the way its gRPC Search calls it), and the generate service's ExtractiveBackend
(max sentences from GenerateSettings). Only Kafka, gRPC and HTTP are left out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from metrics import latency_summary, percentile

WARMUP_QUERIES = 10


async def inprocess_latencies(
    database_url: str, tenant: str, questions: Sequence[str], top_k: int, query_threads: int | None = None
) -> dict[str, Any]:
    """Per-question latency (ms) of encode + hybrid search + extractive answer, run sequentially.

    `query_threads` overrides the query encode's intra-op thread count (default: the embed service's setting).
    """
    from ragstream_common.db import create_pool
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.config import EmbedSettings
    from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
    from ragstream_generate.config import GenerateSettings
    from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
    from ragstream_retrieve.config import RetrieveSettings
    from ragstream_retrieve.lexical import LexicalAnalyzer
    from ragstream_retrieve.models import RetrievalMode, SearchFilters, SearchRequest
    from ragstream_retrieve.search import hybrid_search
    from ragstream_retrieve.wire import TopKLimits, checked_vector, scored_chunks

    embed_settings = EmbedSettings()
    retrieve_settings = RetrieveSettings()
    # The embed service's own loader and query path (its query thread and thread count), so the baseline runs
    # the model exactly as the service does.
    options = embed_settings.encoder_options()
    encoder = Encoder.load(dataclasses.replace(options, query_threads=query_threads or options.query_threads))
    backend = ExtractiveBackend(ExtractiveConfig(max_sentences=GenerateSettings().max_sentences))
    limits = TopKLimits(retrieve_settings.default_top_k, retrieve_settings.max_top_k)
    tuning = retrieve_settings.search_tuning()
    analyzer = LexicalAnalyzer()
    pool = create_pool(database_url, max_size=2, name="bench-inprocess")
    await pool.open(wait=True, timeout=30)
    index = PostgresSearchIndex(pool, retrieve_settings.hnsw())

    async def answer(question: str) -> dict[str, float]:
        started = time.perf_counter()
        vector = checked_vector((await encoder.encode_queries([question]))[0], retrieve_settings.embedding_dimensions)
        embedded = time.perf_counter()
        request = SearchRequest(
            tenant_id=tenant,
            text=question,
            top_k=limits.clamp(top_k),
            mode=RetrievalMode.HYBRID,
            filters=SearchFilters(),
            vector=vector,
        )
        sources = scored_chunks(await hybrid_search(index, analyzer, request, tuning))
        retrieved = time.perf_counter()
        draft = backend.answer(question, sources)
        done = time.perf_counter()
        if not sources or draft.no_answer:
            empty[0] += 1
        return {
            "embed": (embedded - started) * 1000,
            "retrieve": (retrieved - embedded) * 1000,
            "generate": (done - retrieved) * 1000,
            "total": (done - started) * 1000,
        }

    empty = [0]
    try:
        for question in questions[-WARMUP_QUERIES:]:
            await answer(question)
        empty[0] = 0
        timings = [await answer(question) for question in questions]
    finally:
        await pool.close()
        encoder.close()
    stages = {
        stage: {
            "mean_ms": round(sum(t[stage] for t in timings) / len(timings), 1),
            "p50_ms": round(percentile([t[stage] for t in timings], 50), 1),
        }
        for stage in ("embed", "retrieve", "generate", "total")
    }
    return {
        "latency": latency_summary([t["total"] for t in timings]),
        "stages": stages,
        "no_answer_or_no_sources": empty[0],
    }
