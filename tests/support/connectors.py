"""Connectors through the running system, as a tenant would drive them: create one through the API, send it signed
webhooks, wait for its documents, ask questions and see which documents are cited.

Shared by the e2e tests of every provider (tests/e2e/test_connectors_*_e2e.py); kept provider-neutral.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from rag.v1 import connectors_pb2
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED
from ragstream_common.kafka_settings import KafkaSettings
from standardwebhooks import Webhook

from support.tenant_kafka import read_topic

T = TypeVar("T")
Notified = connectors_pb2.ConnectorNotified


async def create_connector(
    client: httpx.AsyncClient,
    provider: str,
    *,
    name: str | None = None,
    config: Mapping[str, str] | None = None,
    secrets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST /v1/connectors, asserting 201; the created body (connector_id, webhook_url, status, signing_secret?)."""
    body: dict[str, Any] = {"type": provider, "name": name or f"e2e {provider} {uuid.uuid4().hex[:6]}"}
    if config is not None:
        body["config"] = dict(config)
    if secrets is not None:
        body["secrets"] = dict(secrets)
    response = await client.post("/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def connector_status(client: httpx.AsyncClient, connector_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/connectors/{connector_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_until(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 60, interval_s: float = 0.2
) -> T:
    """Poll `probe` until it returns something other than None (or False); that value. Fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval_s)


async def wait_for_connector(
    client: httpx.AsyncClient,
    connector_id: str,
    condition: Callable[[dict[str, Any]], bool],
    what: str = "the connector's status",
    timeout_s: float = 60,
) -> dict[str, Any]:
    """GET /v1/connectors/{id} until `condition(body)` holds; the body."""

    async def probe() -> dict[str, Any] | None:
        body = await connector_status(client, connector_id)
        return body if condition(body) else None

    return await wait_until(probe, f"{connector_id}: {what}", timeout_s)


async def document_status(client: httpx.AsyncClient, document_id: str) -> dict[str, Any] | None:
    """GET /v1/documents/{id}; None while the document is unknown (404)."""
    response = await client.get(f"/v1/documents/{document_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_for_document(
    client: httpx.AsyncClient,
    document_id: str,
    statuses: set[str] | frozenset[str] = frozenset({"indexed"}),
    *,
    version: int | None = None,
    min_version: int | None = None,
    title: str | None = None,
    timeout_s: float = 90,
) -> dict[str, Any]:
    """Until the document is in one of `statuses` (and at `version`, at least `min_version`, titled `title`)."""
    last: dict[str, Any] | None = None

    async def probe() -> dict[str, Any] | None:
        nonlocal last
        last = await document_status(client, document_id)
        if last is None or last["status"] not in statuses:
            return None
        if version is not None and last["version"] != version:
            return None
        if min_version is not None and last["version"] < min_version:
            return None
        if title is not None and last.get("title") != title:
            return None
        return last

    try:
        return await wait_until(probe, f"document {document_id} in {sorted(statuses)}", timeout_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc} (last: {last})") from None


async def cited_documents(client: httpx.AsyncClient, question: str, **options: Any) -> set[str]:
    """Ask through POST /v1/query; the ids of the documents the answer cites."""
    response = await client.post("/v1/query", json={"question": question, **options})
    assert response.status_code == 200, response.text
    return {citation["document_id"] for citation in response.json()["citations"]}


async def wait_until_cited(
    client: httpx.AsyncClient, question: str, document_id: str, *, cited: bool = True, timeout_s: float = 30
) -> None:
    """Until the answer to `question` cites `document_id` (or, with cited=False, no longer does)."""

    async def probe() -> bool:
        return (document_id in await cited_documents(client, question)) == cited

    state = "cited" if cited else "no longer cited"
    await wait_until(probe, f"{document_id} {state} for {question!r}", timeout_s, interval_s=0.5)


def standard_webhook_headers(
    signing_secret: str,
    body: bytes,
    *,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> dict[str, str]:
    """The Standard Webhooks headers for `body`, signed with the `standardwebhooks` library as a sender would."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(tz=UTC)
    signature = Webhook(signing_secret).sign(message_id, timestamp, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def document_event(event_type: str, document_id: str, **data: Any) -> bytes:
    """A generic webhook body: {"type": "document.upserted" | "document.deleted", "data": {"id", ...}}."""
    return json.dumps({"type": event_type, "data": {"id": document_id, **data}}).encode()


async def post_signed_webhook(
    webhook_url: str,
    signing_secret: str,
    body: bytes,
    *,
    message_id: str | None = None,
    timestamp: datetime | None = None,
) -> httpx.Response:
    """POST `body` to a webhook connector's URL, signed, from a client without an API key (the signature is the
    only authentication, as for a real sender)."""
    headers = standard_webhook_headers(signing_secret, body, message_id=message_id, timestamp=timestamp)
    async with httpx.AsyncClient(timeout=30) as sender:
        return await sender.post(webhook_url, content=body, headers=headers)


async def published_notifications(
    kafka: KafkaSettings, tenant_id: str, connector_id: str, kind: int = Notified.NOTIFICATION
) -> list[connectors_pb2.ConnectorNotified]:
    """The ConnectorNotified events of `kind` on rag.connectors.notified.v1 for one connector, oldest first per
    partition: what the gateway (or API, or scheduler) really handed the worker. Reads the whole topic."""
    key = f"{tenant_id}/{connector_id}"
    found: list[connectors_pb2.ConnectorNotified] = []
    for record in await read_topic(kafka, CONNECTORS_NOTIFIED.name):
        if record.key != key:
            continue
        message, _ = cloudevents.decode(record.value, record.headers, CONNECTORS_NOTIFIED.event_types)
        assert isinstance(message, connectors_pb2.ConnectorNotified)
        if message.kind == kind:
            found.append(message)
    return found


async def audit_entries(
    gateway_url: str, admin_token: str, tenant_id: str, *, action: str, resource: str | None = None
) -> list[dict[str, Any]]:
    """The tenant's audit entries of `action` (about `resource`), newest first, read with the admin credential."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=30) as admin:
        response = await admin.get(f"/v1/admin/tenants/{tenant_id}/audit", params={"limit": 1000})
    assert response.status_code == 200, response.text
    entries = [dict(entry) for entry in response.json()["items"]]
    return [e for e in entries if e["action"] == action and resource in (None, e["resource"])]
