"""Each service is its own process: it starts, reports SERVING on grpc.health.v1 and exits 0 on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.system import SERVICE_NAMES, LocalServices

pytestmark = pytest.mark.integration


async def test_every_service_serves_health_and_exits_cleanly(
    kafka_topics: str, migrated_database: str, service_identities: LocalCredentials, tmp_path: Path
) -> None:
    services = LocalServices(kafka_topics, migrated_database, tmp_path / "logs", service_identities)
    services.start()
    try:
        statuses = await services.wait_serving(timeout_s=240)
    finally:
        codes = services.stop()
    assert statuses == dict.fromkeys(SERVICE_NAMES, "SERVING")
    assert codes == dict.fromkeys(SERVICE_NAMES, 0), {n: services.log_tail(n) for n, c in codes.items() if c}
