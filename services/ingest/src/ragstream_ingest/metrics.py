"""The ingest service's Prometheus metrics (the one way it counts)."""

from __future__ import annotations

from prometheus_client import Counter

DOCUMENTS = Counter("ragstream_ingest_documents_total", "Documents by outcome", ["outcome"])
CHUNKS = Counter("ragstream_ingest_chunks_total", "Chunks emitted")
