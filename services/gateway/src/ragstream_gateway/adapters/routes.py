"""Where the gateway's events go on Kafka (document intake, the query dispatcher, the connector API and the audit
export relay only emit messages)."""

from __future__ import annotations

from rag.v1 import connectors_pb2, documents_pb2, queries_pb2, security_pb2, usage_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import (
    CONNECTORS_NOTIFIED,
    DOCUMENTS_RECEIVED,
    QUERIES_REQUESTED,
    SECURITY_EVENTS,
    USAGE,
)

GATEWAY_ROUTES: Routes = {
    documents_pb2.DocumentReceived: DOCUMENTS_RECEIVED,
    documents_pb2.DocumentUpdated: DOCUMENTS_RECEIVED,
    documents_pb2.DocumentDeleted: DOCUMENTS_RECEIVED,
    queries_pb2.QueryRequested: QUERIES_REQUESTED,
    security_pb2.SecurityEvent: SECURITY_EVENTS,
    # The connector API's RESYNC and REMOVE; the webhook intake's NOTIFICATION.
    connectors_pb2.ConnectorNotified: CONNECTORS_NOTIFIED,
    # Questions, searches and documents taken in, beside the events that carry them (metering).
    usage_pb2.UsageRecorded: USAGE,
}
