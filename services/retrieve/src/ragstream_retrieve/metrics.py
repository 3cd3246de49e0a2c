"""The retrieve service's Prometheus metrics (the one way it counts); the handlers increment them directly."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from ragstream_common.stage_metrics import declare_stages

# outcome: indexed, already_indexed, superseded, deleted (UpsertOutcome values), failed, removed.
DOCUMENTS = Counter("ragstream_retrieve_documents_total", "Index events by outcome", ["outcome"])
# outcome: answered, expired, failed.
QUERIES = Counter("ragstream_retrieve_queries_total", "Queries by outcome", ["outcome"])
QUERY_BATCH_SECONDS = Histogram(
    "ragstream_retrieve_query_batch_seconds",
    "Time to search and answer a batch of queries",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
# ragstream_stage_seconds: the Postgres index adapter times index, search.py times search.
declare_stages("index", "search")
