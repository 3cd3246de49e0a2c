"""The images' HEALTHCHECK (`python -m ragstream_common.healthcheck <service>`) against a real gRPC server."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from ragstream_common import healthcheck
from ragstream_common.grpc_server import GrpcServer

pytestmark = pytest.mark.integration


async def test_healthy_only_while_the_service_reports_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    async with AsyncExitStack() as stack:
        server = GrpcServer("127.0.0.1", 0, ["rag.v1.EmbedService"])
        await server.start()
        stack.push_async_callback(server.stop)
        monkeypatch.setenv("EMBED_GRPC_PORT", str(server.port))
        # The healthcheck runs its own event loop, as it does in the container.
        assert await asyncio.to_thread(healthcheck.main, ["embed"]) == 1  # up, but not serving yet
        await server.mark_serving()
        assert await asyncio.to_thread(healthcheck.main, ["embed"]) == 0
    assert await asyncio.to_thread(healthcheck.main, ["embed"]) == 1  # stopped: refused
