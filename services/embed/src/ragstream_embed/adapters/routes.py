"""Where the embed service's events go on Kafka (the handlers only emit messages)."""

from __future__ import annotations

from rag.v1 import chunks_pb2, documents_pb2, queries_pb2, usage_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import CHUNKS_EMBEDDED, QUERIES_EMBEDDED, USAGE

CHUNK_ROUTES: Routes = {
    chunks_pb2.ChunksEmbedded: CHUNKS_EMBEDDED,
    # Deletes ride the embedded-chunks topic, keyed like the document's chunks, so they stay behind earlier versions.
    documents_pb2.DocumentDeleted: CHUNKS_EMBEDDED,
    # The chunks each ChunksReady event had embedded (metering).
    usage_pb2.UsageRecorded: USAGE,
}
QUERY_ROUTES: Routes = {queries_pb2.QueryEmbedded: QUERIES_EMBEDDED}
