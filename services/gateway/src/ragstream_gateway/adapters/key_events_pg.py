"""Key and tenant changes pushed by Postgres: LISTEN on one dedicated connection, evict the cached grants.

Migration 0006's triggers `pg_notify('ragstream_key_events', ...)` inside the transaction that revokes, rotates,
expires or re-scopes a key or changes a tenant, so every gateway hears it when (and only if) it commits:
`{"kind": "key", "tenant_id", "key_id"}` or `{"kind": "tenant", "tenant_id"}`.

The connection is probed while quiet (a silent network partition ends no stream) and re-opened after any loss,
1 s doubling to 30 s. While it is down the subscriber is told so (`listening(False)`): the key cache then keeps
grants at most its fallback TTL, and empties itself when the listener is back, since events may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from contextlib import AsyncExitStack
from typing import Protocol

import psycopg
from prometheus_client import Counter, Gauge
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

from ragstream_gateway.adapters.key_cache import CachedTenantDirectory
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.ports import TenantDirectory

log = get_logger(__name__)
CHANNEL = "ragstream_key_events"
# The listener's connection, as pg_stat_activity shows it.
APPLICATION_NAME = "ragstream-gateway-key-events"
EVENTS = Counter("ragstream_gateway_key_events_total", "Key and tenant change notifications received", ["kind"])
LISTENING = Gauge("ragstream_gateway_key_events_listening", "1 while the key-change listener is connected")


class KeyEventSubscriber(Protocol):
    def key_changed(self, tenant_id: str, key_id: str) -> None: ...

    def tenant_changed(self, tenant_id: str) -> None: ...

    def listening(self, connected: bool) -> None: ...

    def clear(self) -> None: ...


def dispatch(payload: str, subscriber: KeyEventSubscriber) -> None:
    """Apply one notification; one that cannot be read empties the whole cache (safe, if wasteful)."""
    try:
        event = json.loads(payload)
        kind, tenant_id = event["kind"], str(event["tenant_id"])
    except (ValueError, KeyError, TypeError):
        kind, tenant_id = "other", ""
    if kind == "key":
        subscriber.key_changed(tenant_id, str(event.get("key_id", "")))
    elif kind == "tenant":
        subscriber.tenant_changed(tenant_id)
    else:
        log.warning("unreadable key event; dropping every cached grant", payload=payload[:200])
        subscriber.clear()
        kind = "other"
    EVENTS.labels(kind).inc()


class KeyEventListener:
    def __init__(
        self,
        database_url: str,
        subscriber: KeyEventSubscriber,
        *,
        probe_interval_s: float = 5.0,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 30.0,
    ) -> None:
        self._url = database_url
        self._subscriber = subscriber
        self._probe_interval_s = probe_interval_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop` is set, reconnecting after every loss."""
        delay = self._retry_initial_s
        while not stop.is_set():
            try:
                connection = psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
                )
                async with await connection as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._up(True)
                    delay = self._retry_initial_s
                    await self._receive(conn, stop)
            except Exception as exc:  # whatever broke the connection, listen again (the cache is short-lived meanwhile)
                log.warning("key event listener lost its connection", error=repr(exc), retry_in_s=delay)
            finally:
                self._up(False)
            await sleep_or_stop(stop, delay)
            delay = min(delay * 2, self._retry_max_s)

    def _up(self, connected: bool) -> None:
        if connected == self.connected.is_set():
            return
        (self.connected.set if connected else self.connected.clear)()
        LISTENING.set(1 if connected else 0)
        self._subscriber.listening(connected)

    async def _receive(self, conn: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        probed = time.monotonic()
        while not stop.is_set():
            async for notify in conn.notifies(timeout=0.5):
                dispatch(notify.payload, self._subscriber)
            if time.monotonic() - probed >= self._probe_interval_s:
                async with asyncio.timeout(self._probe_interval_s):
                    await conn.execute("SELECT 1")
                probed = time.monotonic()


async def start_key_events(
    stack: AsyncExitStack, database_url: str, subscriber: KeyEventSubscriber, *, first_wait_s: float = 5.0
) -> KeyEventListener:
    """The listener, running until `stack` closes; waits up to `first_wait_s` for its first connection (the
    cache is safe without it, only shorter-lived)."""
    listener = KeyEventListener(database_url, subscriber)
    stop = asyncio.Event()
    task = asyncio.ensure_future(listener.run(stop))

    async def close() -> None:
        stop.set()
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            log.warning("key event listener did not stop in time")

    stack.push_async_callback(close)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listener.connected.wait(), first_wait_s)
    return listener


async def open_key_directory(
    stack: AsyncExitStack, settings: GatewaySettings, directory: TenantDirectory
) -> CachedTenantDirectory:
    """`directory` behind the key cache, which the listener keeps current while GATEWAY_KEY_EVENTS_ENABLED."""
    if not settings.key_events_enabled:
        return CachedTenantDirectory(directory, settings.key_cache_ttl_s)
    cache = CachedTenantDirectory(directory, settings.key_cache_ttl_s, fallback_ttl_s=settings.key_cache_fallback_ttl_s)
    await start_key_events(stack, settings.database_url, cache)
    return cache
