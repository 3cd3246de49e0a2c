"""Where the retrieve service's events go on Kafka (the handlers only emit messages).

Two routings for the two producers app.py starts: the indexer's status events on the bulk producer, and
QueryRetrieved on the "queries" lane, so a query never waits behind a batch of status events. A message
emitted on the wrong lane is a TypeError (no route), not a silent detour.
"""

from __future__ import annotations

from rag.v1 import queries_pb2, status_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import DOCUMENTS_STATUS, QUERIES_RETRIEVED

INDEX_ROUTES: Routes = {
    status_pb2.DocumentIndexed: DOCUMENTS_STATUS,
    status_pb2.DocumentFailed: DOCUMENTS_STATUS,
    status_pb2.DocumentRemoved: DOCUMENTS_STATUS,
}
QUERY_ROUTES: Routes = {
    queries_pb2.QueryRetrieved: QUERIES_RETRIEVED,
}
