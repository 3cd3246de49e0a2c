"""The ingest service's Prometheus metrics (the one way it counts)."""

from __future__ import annotations

from prometheus_client import Counter
from ragstream_common.stage_metrics import declare_stages

DOCUMENTS = Counter("ragstream_ingest_documents_total", "Documents by outcome", ["outcome"])
CHUNKS = Counter("ragstream_ingest_chunks_total", "Chunks emitted")
# ragstream_stage_seconds: extract.py times parse, chunker.py chunk.
declare_stages("parse", "chunk")
