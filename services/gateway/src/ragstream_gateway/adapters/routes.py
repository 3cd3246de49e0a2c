"""Where the gateway's query events go on Kafka (the query dispatcher only emits messages)."""

from __future__ import annotations

from rag.v1 import queries_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import QUERIES_REQUESTED

QUERY_ROUTES: Routes = {
    queries_pb2.QueryRequested: QUERIES_REQUESTED,
}
