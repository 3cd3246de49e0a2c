"""The gateway under test, built like the composition root builds it, over the session's Kafka and Postgres.

Two ways to reach it: `asgi_client` in the test's own event loop (per-request client addresses, no sockets), and
`ServedGateway`, uvicorn on a free port in a thread with its own event loop, for synchronous clients such as
schemathesis (its collaborators are opened in that loop: a psycopg pool or an aiokafka producer belongs to one).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from contextlib import AsyncExitStack
from typing import Any

import httpx
import uvicorn
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from pydantic import SecretStr
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.secret_settings import SecretsSettings
from ragstream_devstack.processes import free_port
from ragstream_gateway.adapters.routes import GATEWAY_ROUTES
from ragstream_gateway.app import EmbeddedServer, create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.query.replies import PendingQueries
from ragstream_gateway.query.service import QueryDispatcher
from support.tokens import TokenKit

ADMIN_TOKEN = "security-suite-admin-token-0123456789abcdef"  # long enough for any minimum length
_ADDRESSES = itertools.count(1)


UNLIMITED = "100000/minute"


def security_settings(database_urls: dict[str, str], kafka: KafkaSettings, **changes: Any) -> GatewaySettings:
    """The gateway as deployed (its own login, the admin login for admin routes, a token signing key), with an
    admin token and no dev tenant; every rate limit high enough that the suite's own traffic is never what gets
    refused (throttling has its own tests)."""
    values: dict[str, Any] = {
        "DATABASE_URL": database_urls["gateway"],
        "admin_database_url": database_urls["gateway-admin"],
        "kafka": kafka,
        "tokens": TokenKit().settings("gateway"),
        "admin_token": ADMIN_TOKEN,
        "default_rate_limit": UNLIMITED,
        "key_rate_limit": UNLIMITED,
        "admin_rate_limit": UNLIMITED,
        "unknown_key_rate_limit": UNLIMITED,
        "max_upload_bytes": 2 * 1024 * 1024,
        "inline_text_max_bytes": 1024,
        "db_pool_size": 4,
        "query_timeout_ms": 1000,
        # Connector secrets are sealed under a master key; without one the connector routes answer 503.
        "secrets": SecretsSettings(master_key=SecretStr(base64.b64encode(b"s" * 32).decode())),
        **changes,
    }
    return GatewaySettings(**values)


async def open_gateway_deps(settings: GatewaySettings, stack: AsyncExitStack) -> GatewayDeps:
    """`open_deps`, retried for a few seconds: the broker may not know the principals' new SCRAM credentials yet
    when the suite starts right after provisioning them."""
    for attempt in range(20):
        attempt_stack = AsyncExitStack()
        try:
            deps = await open_deps(settings, attempt_stack)
        except KafkaConnectionError:
            await attempt_stack.aclose()
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
        else:
            stack.push_async_exit(attempt_stack)
            return deps
    raise AssertionError("unreachable")


def build_app(settings: GatewaySettings, deps: GatewayDeps) -> FastAPI:
    """Every route the gateway serves, the query API included (its answers never come: no workers run here)."""
    pending = PendingQueries()
    queries = QueryDispatcher(RoutedEventSink(deps.publisher, GATEWAY_ROUTES), pending, "127.0.0.1:1", 2.0)
    return create_app(settings, deps, queries=queries)


def next_address() -> str:
    """A client address no other request of this run used (TEST-NET-2 and on), so that per-address throttles
    for unknown keys and admin tokens judge each probe on its own."""
    n = next(_ADDRESSES)
    return f"198.{18 + (n >> 16) % 2}.{(n >> 8) % 256}.{n % 256}"


def asgi_client(app: FastAPI, headers: dict[str, str] | None = None, ip: str | None = None) -> httpx.AsyncClient:
    # An exception the app does not handle is answered 500 by its outermost middleware, as in production.
    transport = httpx.ASGITransport(app=app, client=(ip or next_address(), 50000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers or {}, timeout=30)


class ServedGateway:
    """uvicorn serving `build_app` on 127.0.0.1:<free port> from a thread with its own event loop."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server: EmbeddedServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="security-gateway", daemon=True)

    def __enter__(self) -> ServedGateway:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"the gateway did not start: {self._error!r}")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with AsyncExitStack() as stack:
            app = build_app(self.settings, await open_gateway_deps(self.settings, stack))
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_config=None)
            self._server = EmbeddedServer(config)  # no signal handlers: this is not the main thread
            serving = asyncio.ensure_future(self._server.serve())
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.05)
            self._ready.set()
            await serving
