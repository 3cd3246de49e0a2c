"""Where the metering service publishes: nowhere. It reads rag.usage.recorded.v1 (through faust) and writes
Postgres; its faust changelog topics are faust's own, granted by prefix (kafka/acls.py STREAM_APPS)."""

from __future__ import annotations

from ragstream_common.kafka.routing import Routes

METERING_ROUTES: Routes = {}
