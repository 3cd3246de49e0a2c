"""Where the ingest service's events go on Kafka (the handlers only emit messages)."""

from __future__ import annotations

from rag.v1 import chunks_pb2, documents_pb2, status_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import CHUNKS_READY, DOCUMENTS_STATUS

INGEST_ROUTES: Routes = {
    chunks_pb2.ChunksReady: CHUNKS_READY,
    # Deletes ride the chunks topic, keyed like the document's chunks, so they stay behind earlier versions.
    documents_pb2.DocumentDeleted: CHUNKS_READY,
    status_pb2.DocumentProcessing: DOCUMENTS_STATUS,
    status_pb2.DocumentFailed: DOCUMENTS_STATUS,
}
