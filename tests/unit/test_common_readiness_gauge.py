"""`ragstream_ready`: every verdict of a service's readiness watch, 1 while all its checks pass, else 0 (the
RagstreamServiceNotReady alert reads it)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from ragstream_common.readiness import DependencyProbe

pytestmark = pytest.mark.unit


def ready() -> float | None:
    return REGISTRY.get_sample_value("ragstream_ready")


async def test_the_gauge_follows_every_verdict() -> None:
    database_up = True

    async def database() -> bool:
        if not database_up:
            raise ConnectionRefusedError("down")
        return True

    async def kafka() -> bool:
        return True

    async def ignore(_: bool) -> None:
        pass

    probe = DependencyProbe({"database": database, "kafka": kafka})
    await probe.step(ignore)
    assert ready() == 1
    database_up = False
    await probe.step(ignore)
    assert ready() == 0
    await probe.step(ignore)  # no flip, still exported
    assert ready() == 0
    database_up = True
    await probe.step(ignore)
    assert ready() == 1
