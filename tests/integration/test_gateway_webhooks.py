"""Webhook intake through the real gateway app, Postgres (connectors sealed under a master key, deliveries, audit
log) and Kafka (rag.connectors.notified.v1): signed requests publish exactly one ConnectorNotified, forged and
replayed ones publish nothing, and every refusal is in the connector's tenant's audit log.

Requests are made the way each provider makes them (see webhook_verification.py for the documents followed);
signatures come from the `standardwebhooks` library and from Box's documented HMAC."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from rag.v1 import connectors_pb2
from ragstream_common.kafka import cloudevents
from ragstream_common.kafka.topics import CONNECTORS_NOTIFIED
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.secret_envelope import SecretsSettings
from ragstream_gateway.app import create_app, open_deps
from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.connector_ports import NewConnector, Provider
from ragstream_gateway.deps import GatewayDeps
from ragstream_gateway.problems import PROBLEM_JSON
from ragstream_gateway.webhook_verification import box_signature
from standardwebhooks.webhooks import Webhook
from support.kafka_clients import client_kwargs

pytestmark = pytest.mark.integration
RUN = uuid.uuid4().hex[:8]
TENANT = f"wh-{RUN}"
ADMIN_TOKEN = "admin-secret-for-webhook-tests-32-chars"
Gateway = tuple[GatewaySettings, GatewayDeps]


class NotifiedTail:
    """Reads rag.connectors.notified.v1 from the offsets it had when opened, keeping one connector's events."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._consumer = AIOKafkaConsumer(**client_kwargs(kafka), enable_auto_commit=False)

    async def __aenter__(self) -> NotifiedTail:
        await self._consumer.start()
        partitions = [TopicPartition(CONNECTORS_NOTIFIED.name, p) for p in range(CONNECTORS_NOTIFIED.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve now, so records produced from here on are all seen
            await self._consumer.position(partition)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._consumer.stop()

    async def events(self, connector_id: str, count: int, timeout_s: float = 15) -> list[Any]:
        key = f"{TENANT}/{connector_id}".encode()
        found: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while len(found) < count:
                batches = await self._consumer.getmany(timeout_ms=200)
                for record in (r for batch in batches.values() for r in batch):
                    if record.key == key:
                        headers = cloudevents.headers_to_dict(list(record.headers))
                        message, _ = cloudevents.decode(record.value, headers, CONNECTORS_NOTIFIED.event_types)
                        found.append(message)
        return found

    async def quiet(self, connector_id: str, wait_s: float = 1.5) -> bool:
        """True when no event for the connector arrives within `wait_s`."""
        try:
            await self.events(connector_id, 1, timeout_s=wait_s)
        except TimeoutError:
            return True
        return False


@pytest.fixture(scope="module")
async def gateway(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[Gateway]:
    master_key = SecretStr(base64.b64encode(os.urandom(32)).decode())
    settings = GatewaySettings.model_validate(
        {
            "DATABASE_URL": service_database_urls["gateway"],
            "admin_database_url": service_database_urls["gateway-admin"],
            "kafka": kafka_principals["gateway"],
            "dev_tenant": TENANT,
            "dev_api_key": f"wh-key-{RUN}",
            "admin_token": ADMIN_TOKEN,
            "secrets": SecretsSettings(master_key=master_key, master_key_id=f"wh{RUN}"),
            "db_pool_size": 4,
        }
    )
    async with AsyncExitStack() as stack:
        deps = await open_deps(settings, stack)
        assert deps.connectors is not None
        yield settings, deps


@pytest.fixture
async def tail(kafka_admin: KafkaSettings) -> AsyncIterator[NotifiedTail]:
    async with NotifiedTail(kafka_admin) as t:
        yield t


def client_for(gateway: Gateway, **changes: Any) -> httpx.AsyncClient:
    """No API key: webhook requests carry none."""
    settings, deps = gateway
    app = create_app(settings.model_copy(update=changes), deps)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("203.0.113.9", 443)), base_url="http://gw")


async def new_connector(gateway: Gateway, provider: Provider, secrets_: dict[str, str]) -> str:
    connector_id = f"con_{secrets.token_hex(8)}"
    directory = gateway[1].connectors
    assert directory is not None
    await directory.create(NewConnector(connector_id, TENANT, provider, f"{provider} test", {}, secrets_))
    return connector_id


async def audit_rows(gateway: Gateway, connector_id: str) -> list[dict[str, Any]]:
    async with client_for(gateway) as admin:
        response = await admin.get(
            f"/v1/admin/tenants/{TENANT}/audit",
            params={"limit": 200},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert response.status_code == 200, response.text
    return [item for item in response.json()["items"] if item["resource"] == connector_id]


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def standard_webhook(secret: str, body: str, msg_id: str) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
        "content-type": "application/json",
    }


async def test_a_signed_webhook_is_published_once_and_its_replay_is_not(gateway: Gateway, tail: NotifiedTail) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    connector_id = await new_connector(gateway, "webhook", {"signing_secret": secret})
    body = json.dumps({"type": "document.upserted", "data": {"id": "doc-1", "title": "Policy", "text": "Hello"}})
    headers = standard_webhook(secret, body, f"msg_{RUN}")
    async with client_for(gateway) as client:
        accepted = await client.post(f"/v1/webhooks/{connector_id}", content=body, headers=headers)
        assert accepted.status_code == 202, accepted.text
        [event] = await tail.events(connector_id, 1)
        replayed = await client.post(f"/v1/webhooks/{connector_id}", content=body, headers=headers)
    assert replayed.status_code == 200
    assert await tail.quiet(connector_id)
    assert (event.tenant_id, event.connector_id, event.provider) == (TENANT, connector_id, "webhook")
    assert event.kind == connectors_pb2.ConnectorNotified.NOTIFICATION
    assert (event.delivery_id, event.payload) == (f"msg_{RUN}", body.encode())
    assert event.attributes["type"] == "document.upserted" and "webhook-signature" not in event.attributes
    actions = [row["action"] for row in await audit_rows(gateway, connector_id)]
    assert sorted(actions) == ["connector.notification.accepted", "connector.notification.duplicate"]


async def test_a_forged_webhook_is_refused_audited_and_not_published(gateway: Gateway, tail: NotifiedTail) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    connector_id = await new_connector(gateway, "webhook", {"signing_secret": secret})
    body = json.dumps({"type": "document.deleted", "data": {"id": "doc-1"}})
    forged = standard_webhook("whsec_" + base64.b64encode(os.urandom(32)).decode(), body, "msg_forged")
    async with client_for(gateway) as client:
        response = await client.post(f"/v1/webhooks/{connector_id}", content=body, headers=forged)
        problem(response, 401)
        assert response.headers["www-authenticate"]
        # Verified, but not a document event: 422, still nothing published.
        bad = json.dumps({"type": "document.exploded", "data": {"id": "doc-1"}})
        invalid = await client.post(
            f"/v1/webhooks/{connector_id}", content=bad, headers=standard_webhook(secret, bad, "m2")
        )
        assert "type" in problem(invalid, 422)["detail"]
    assert await tail.quiet(connector_id)
    rows = await audit_rows(gateway, connector_id)
    reasons = sorted(row["details"]["reason"] for row in rows)
    assert reasons == ["bad_signature", "invalid_event"]
    assert all(row["action"] == "connector.notification.rejected" for row in rows)
    assert {row["outcome"] for row in rows} == {"denied", "refused"}
    assert all(row["client_ip"] == "203.0.113.9" for row in rows)
    assert secret not in json.dumps(rows) and forged["webhook-signature"] not in json.dumps(rows)


async def test_graph_handshake_client_state_and_notification(gateway: Gateway, tail: NotifiedTail) -> None:
    client_state = secrets.token_urlsafe(32)
    connector_id = await new_connector(gateway, "sharepoint", {"client_secret": "cs", "client_state": client_state})
    url = f"/v1/webhooks/{connector_id}"
    notification = {"subscriptionId": "sub-1", "clientState": client_state, "resource": "drives/d1/root"}
    body = json.dumps({"value": [notification]})
    async with client_for(gateway) as client:
        handshake = await client.post(
            url + "?validationToken=Validation%3A+Testing+client+application+reachability%20for+subscription",
            headers={"content-type": "text/plain"},
        )
        assert handshake.status_code == 200
        assert handshake.headers["content-type"].startswith("text/plain")
        assert handshake.text == "Validation: Testing client application reachability for subscription"
        wrong = json.dumps({"value": [{**notification, "clientState": "guessed"}]})
        problem(await client.post(url, content=wrong, headers={"content-type": "application/json"}), 403)
        assert await tail.quiet(connector_id)
        accepted = await client.post(url, content=body, headers={"content-type": "application/json"})
        assert accepted.status_code == 202
        [event] = await tail.events(connector_id, 1)
        # The next change notification has the same body (Graph sends no delivery id): it goes out too.
        again = await client.post(url, content=body, headers={"content-type": "application/json"})
        assert again.status_code == 202
        [second] = await tail.events(connector_id, 1)
    assert event.provider == "sharepoint" and event.payload == body.encode()
    assert second.delivery_id != event.delivery_id
    assert await tail.quiet(connector_id)
    rows = await audit_rows(gateway, connector_id)
    [rejected] = [row for row in rows if row["action"] == "connector.notification.rejected"]
    assert rejected["details"]["reason"] == "client_state_mismatch" and client_state not in json.dumps(rows)


async def test_box_deliveries_under_either_key_and_stale_ones(gateway: Gateway, tail: NotifiedTail) -> None:
    keys = {
        "client_secret": "cs",
        "primary_signature_key": "primary-" + RUN,
        "secondary_signature_key": "second-" + RUN,
    }
    connector_id = await new_connector(gateway, "box", keys)
    body = json.dumps({"type": "webhook_event", "id": "ev-1", "trigger": "FILE.UPLOADED", "source": {"id": "f1"}})

    def box_headers(delivery_id: str, sent: datetime, key: str) -> dict[str, str]:
        stamp = sent.isoformat()
        return {
            "BOX-DELIVERY-ID": delivery_id,
            "BOX-DELIVERY-TIMESTAMP": stamp,
            "BOX-SIGNATURE-VERSION": "1",
            "BOX-SIGNATURE-ALGORITHM": "HmacSHA256",
            "BOX-SIGNATURE-PRIMARY": box_signature(body.encode(), stamp, "old-primary"),  # rotated away
            "BOX-SIGNATURE-SECONDARY": box_signature(body.encode(), stamp, key),
            "content-type": "application/json",
        }

    now = datetime.now(UTC)
    async with client_for(gateway) as client:
        url = f"/v1/webhooks/{connector_id}"
        stale = box_headers("bd-stale", now - timedelta(minutes=11), keys["secondary_signature_key"])
        problem(await client.post(url, content=body, headers=stale), 401)
        forged = box_headers("bd-forged", now, "not-the-key")
        problem(await client.post(url, content=body, headers=forged), 401)
        assert await tail.quiet(connector_id)
        good = box_headers("bd-1", now, keys["secondary_signature_key"])
        assert (await client.post(url, content=body, headers=good)).status_code == 200
        [event] = await tail.events(connector_id, 1)
    assert (event.delivery_id, event.attributes["trigger"]) == ("box-event-ev-1", "FILE.UPLOADED")
    assert event.attributes["box-delivery-id"] == "bd-1"


async def test_drive_sync_is_acknowledged_and_changes_published(gateway: Gateway, tail: NotifiedTail) -> None:
    token = secrets.token_urlsafe(24)
    connector_id = await new_connector(
        gateway, "gdrive", {"client_secret": "cs", "refresh_token": "r", "channel_token": token}
    )
    headers = {
        "X-Goog-Channel-ID": "ch-" + RUN,
        "X-Goog-Channel-Token": token,
        "X-Goog-Message-Number": "1",
        "X-Goog-Resource-State": "sync",
        "X-Goog-Resource-ID": "res-1",
        "X-Goog-Channel-Expiration": "Tue, 10 Mar 2026 12:00:00 GMT",
    }
    change = {**headers, "X-Goog-Message-Number": "2", "X-Goog-Resource-State": "change"}
    async with client_for(gateway) as client:
        url = f"/v1/webhooks/{connector_id}"
        assert (await client.post(url, headers=headers)).status_code == 200
        assert await tail.quiet(connector_id)
        problem(await client.post(url, headers={**change, "X-Goog-Channel-Token": "guess"}), 403)
        assert (await client.post(url, headers=change)).status_code == 200
        [event] = await tail.events(connector_id, 1)
    assert event.delivery_id == f"ch-{RUN}:2" and event.payload == b""
    assert event.attributes["x-goog-resource-state"] == "change" and "x-goog-channel-token" not in event.attributes


async def test_unknown_connectors_are_not_found_without_any_api_key(gateway: Gateway) -> None:
    async with client_for(gateway) as client:
        body = problem(await client.post("/v1/webhooks/con_0000000000000000", content=b"{}"), 404)
        assert body["type"] == "urn:ragstream:problem:connector-not-found"
        problem(await client.post("/v1/webhooks/not-a-connector?validationToken=x"), 404)


async def test_a_body_over_the_provider_cap_is_refused(gateway: Gateway, tail: NotifiedTail) -> None:
    connector_id = await new_connector(gateway, "box", {"primary_signature_key": "k"})
    async with client_for(gateway) as client:
        response = await client.post(f"/v1/webhooks/{connector_id}", content=b"x" * (1024 * 1024 + 1))
    assert problem(response, 413)["type"] == "urn:ragstream:problem:webhook-body-too-large"
    assert await tail.quiet(connector_id, wait_s=0.5)
    [row] = await audit_rows(gateway, connector_id)
    assert (row["action"], row["details"]["reason"]) == ("connector.notification.rejected", "body_too_large")


async def test_a_notification_flood_is_throttled(gateway: Gateway, tail: NotifiedTail) -> None:
    client_state = secrets.token_urlsafe(32)
    connector_id = await new_connector(gateway, "onedrive", {"client_secret": "cs", "client_state": client_state})
    url = f"/v1/webhooks/{connector_id}"
    async with client_for(gateway, connector_notifications_per_minute=2) as client:
        statuses = []
        for n in range(3):
            body = json.dumps({"value": [{"clientState": client_state, "resource": f"drives/d/items/{n}"}]})
            response = await client.post(url, content=body)
            statuses.append(response.status_code)
        assert statuses == [202, 202, 429]
        assert int(response.headers["retry-after"]) >= 1
        await tail.events(connector_id, 2)
    assert await tail.quiet(connector_id)
