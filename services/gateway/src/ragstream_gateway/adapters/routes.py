"""Where the gateway's events go on Kafka (document intake and the query dispatcher only emit messages)."""

from __future__ import annotations

from rag.v1 import documents_pb2, queries_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import DOCUMENTS_RECEIVED, QUERIES_REQUESTED

GATEWAY_ROUTES: Routes = {
    documents_pb2.DocumentReceived: DOCUMENTS_RECEIVED,
    documents_pb2.DocumentUpdated: DOCUMENTS_RECEIVED,
    documents_pb2.DocumentDeleted: DOCUMENTS_RECEIVED,
    queries_pb2.QueryRequested: QUERIES_REQUESTED,
}
