"""The embed service's Prometheus metrics (the one way it counts)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from ragstream_common.stage_metrics import declare_stages

# outcome: "encoded" (one model row per distinct uncached content hash) or "reused" (vector from the cache).
CHUNKS = Counter("ragstream_embed_chunks_total", "Chunks embedded, by outcome", ["outcome"])
# outcome: "encoded" or "expired" (past its deadline on arrival, dropped without work).
QUERIES = Counter("ragstream_embed_queries_total", "Queries, by outcome", ["outcome"])
# path: "documents" or "queries", the two model threads.
ENCODE_BATCH = Histogram(
    "ragstream_embed_encode_batch_texts",
    "Texts per model call",
    ["path"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
ENCODE_SECONDS = Histogram(
    "ragstream_embed_encode_seconds",
    "Duration of one model call",
    ["path"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# ragstream_stage_seconds: the encoder adapter times embed_batch (chunk batches) and query_embed.
declare_stages("embed_batch", "query_embed")
