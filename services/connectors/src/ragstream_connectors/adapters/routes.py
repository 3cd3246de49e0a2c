"""Where the connectors worker's events go on Kafka (the handlers, sync engine and scheduler only emit messages)."""

from __future__ import annotations

from rag.v1 import connectors_pb2, documents_pb2, usage_pb2
from ragstream_common.kafka.routing import Routes
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED, DOCUMENTS_RECEIVED, USAGE

CONNECTORS_ROUTES: Routes = {
    # A connector's documents enter the pipeline exactly where uploads do, keyed `<tenant>/<document>`.
    documents_pb2.DocumentReceived: DOCUMENTS_RECEIVED,
    documents_pb2.DocumentUpdated: DOCUMENTS_RECEIVED,
    documents_pb2.DocumentDeleted: DOCUMENTS_RECEIVED,
    # The scheduler's POLL and RENEW, keyed `<tenant>/<connector>`: behind the connector's other work.
    connectors_pb2.ConnectorNotified: CONNECTORS_NOTIFIED,
    # The items each applied page synced (metering).
    usage_pb2.UsageRecorded: USAGE,
}
