"""Generic signed webhooks through the running system, as a new user tries them (issue 12's acceptance): create a
`webhook` connector, sign deliveries with the `standardwebhooks` library, and watch the documents through the
gateway -> rag.connectors.notified.v1 -> connectors worker -> ingest -> embed -> retrieve pipeline."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.system import LocalServices
from standins.server import StandinServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from support.connectors import (
    audit_entries,
    connector_status,
    create_connector,
    document_event,
    post_signed_webhook,
    published_notifications,
    wait_for_connector,
    wait_for_document,
    wait_until,
    wait_until_cited,
)
from support.samples import FORMATS

pytestmark = pytest.mark.e2e
TENANT = "default"
ADMIN_TOKEN = "admin-token-for-e2e-tests-32-chars-min"

LIGHTHOUSE = (
    "The Varnholm lighthouse on Skerry Nine flashes a green light every eleven seconds. "
    "Its keeper, Ingrid Solberg, logs the fog horn tests every Tuesday at dawn."
)
LIGHTHOUSE_EDITED = (
    "The Varnholm lighthouse on Skerry Nine now flashes a red light every fourteen seconds. "
    "Its keeper, Ingrid Solberg, retired; the fog horn is tested every Friday at dusk."
)
QUESTION = "How often does the Varnholm lighthouse on Skerry Nine flash?"


# Every signing secret the module's connectors were given: none may ever reach a service log (last test).
SIGNING_SECRETS: list[str] = []


@pytest.fixture
async def webhook_connector(gateway: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    """A fresh `webhook` connector (its create response, signing secret included); removed afterwards."""
    created = await create_connector(gateway, "webhook", name="CMS")
    SIGNING_SECRETS.append(created["signing_secret"])
    yield created
    await gateway.delete(f"/v1/connectors/{created['connector_id']}", params={"purge": "true"})


def upsert(item_id: str, text: str, title: str) -> bytes:
    return document_event("document.upserted", item_id, title=title, text=text, metadata={"team": "maritime"})


async def test_signed_webhooks_index_reversion_and_delete_a_document(
    gateway: httpx.AsyncClient, kafka_admin: KafkaSettings, system: LocalServices, webhook_connector: dict[str, Any]
) -> None:
    connector_id, secret = webhook_connector["connector_id"], webhook_connector["signing_secret"]
    url = webhook_connector["webhook_url"]
    assert webhook_connector["status"] == "active" and secret.startswith("whsec_")
    assert url == f"{system.gateway_url}/v1/webhooks/{connector_id}"
    assert "signing_secret" not in await connector_status(gateway, connector_id)  # shown once, never again

    item_id = f"lighthouse-{uuid.uuid4().hex[:6]}"
    document_id = f"{connector_id}:{item_id}"
    first = upsert(item_id, LIGHTHOUSE, "Varnholm lighthouse")
    delivery = f"msg_{uuid.uuid4().hex}"
    accepted = await post_signed_webhook(url, secret, first, message_id=delivery)
    assert accepted.status_code == 202, accepted.text
    indexed = await wait_for_document(gateway, document_id, version=1, title="Varnholm lighthouse")
    assert indexed["metadata"]["connector_id"] == connector_id
    assert indexed["metadata"]["provider"] == "webhook" and indexed["metadata"]["item_id"] == item_id
    assert indexed["metadata"]["team"] == "maritime"
    await wait_until_cited(gateway, QUESTION, document_id)

    # A replay of the same delivery (same webhook-id): answered so the sender stops, never handed on.
    replay = await post_signed_webhook(url, secret, first, message_id=delivery)
    assert replay.status_code == 200, replay.text
    # A forged signature (another secret): refused before anything is read, nothing published.
    forged_id = f"msg_{uuid.uuid4().hex}"
    forged_body = upsert(item_id, "Forged: the lighthouse was demolished.", "forged")
    forged = await post_signed_webhook(
        url, "whsec_" + base64.b64encode(b"x" * 32).decode(), forged_body, message_id=forged_id
    )
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith("application/problem+json")
    assert "www-authenticate" in forged.headers

    # The edit is handled after the replay and the forgery on the connector's partition: version 2 (not 3)
    # and the edited text show that neither of them produced a version.
    edited = await post_signed_webhook(url, secret, upsert(item_id, LIGHTHOUSE_EDITED, "Varnholm lighthouse (2)"))
    assert edited.status_code == 202, edited.text
    # The title comes with the registration, which may land after the pipeline's status for the version.
    await wait_for_document(gateway, document_id, version=2, title="Varnholm lighthouse (2)")
    notified = await published_notifications(kafka_admin, TENANT, connector_id)
    assert [n.delivery_id for n in notified].count(delivery) == 1
    assert forged_id not in {n.delivery_id for n in notified}
    rejected = await wait_until(
        lambda: _audited(system, "connector.notification.rejected", connector_id), "the forgery audited"
    )
    assert rejected[0]["details"]["reason"] == "bad_signature"
    assert "whsec_" not in str(rejected) and secret not in str(rejected)

    deleted = await post_signed_webhook(url, secret, document_event("document.deleted", item_id))
    assert deleted.status_code == 202, deleted.text
    await wait_for_document(gateway, document_id, {"deleted"})
    await wait_until_cited(gateway, QUESTION, document_id, cited=False)

    # Restored: an upsert after the delete indexes the document again, as its next version.
    restored = await post_signed_webhook(url, secret, upsert(item_id, LIGHTHOUSE_EDITED, "Varnholm lighthouse (3)"))
    assert restored.status_code == 202, restored.text
    await wait_for_document(gateway, document_id, version=3, title="Varnholm lighthouse (3)")
    await wait_until_cited(gateway, QUESTION, document_id)

    status = await connector_status(gateway, connector_id)
    assert status["last_notification_at"] is not None and status["items_synced"] >= 4, status


async def _audited(system: LocalServices, action: str, connector_id: str) -> list[dict[str, Any]] | None:
    found = await audit_entries(system.gateway_url, ADMIN_TOKEN, TENANT, action=action, resource=connector_id)
    return found or None


async def test_stale_timestamp_is_refused(gateway: httpx.AsyncClient, webhook_connector: dict[str, Any]) -> None:
    """Signed correctly but six minutes old (Standard Webhooks' tolerance is five): a replay window closed."""
    body = upsert("stale-1", LIGHTHOUSE, "stale")
    stale = datetime.now(tz=UTC) - timedelta(minutes=6)
    response = await post_signed_webhook(
        webhook_connector["webhook_url"], webhook_connector["signing_secret"], body, timestamp=stale
    )
    assert response.status_code == 401, response.text
    assert (await gateway.get(f"/v1/documents/{webhook_connector['connector_id']}:stale-1")).status_code == 404


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
async def test_base64_content_of_a_binary_format_is_indexed(
    gateway: httpx.AsyncClient, webhook_connector: dict[str, Any], fmt: str
) -> None:
    filename, content_type, make = FORMATS[fmt]
    item_id = f"paper-{fmt}"
    body = document_event(
        "document.upserted",
        item_id,
        title=filename,
        content_type=content_type,
        content_base64=base64.b64encode(make()).decode(),
    )
    response = await post_signed_webhook(webhook_connector["webhook_url"], webhook_connector["signing_secret"], body)
    assert response.status_code == 202, response.text
    document_id = f"{webhook_connector['connector_id']}:{item_id}"
    indexed = await wait_for_document(gateway, document_id, {"indexed", "failed"}, title=filename)
    assert indexed["status"] == "indexed", indexed
    assert indexed["content_type"] == content_type and indexed["chunk_count"] >= 1


@pytest.fixture(scope="module")
def document_host() -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 holding one document, as a CMS that links its content would. The e2e
    system's ingest worker may fetch from private addresses (INGEST_FETCH_ALLOW_PRIVATE_NETWORKS, see
    tests/support/system_plugin.py), which is what lets it reach this loopback server at all."""

    async def notice(_: Request) -> Response:
        return PlainTextResponse(HARBOUR_NOTICE, headers={"Content-Type": "text/plain; charset=utf-8"})

    app = Starlette(routes=[Route("/notices/harbour.txt", notice)])
    with StandinServer(app, name="webhook-document-host") as server:
        yield server.base_url


HARBOUR_NOTICE = "Notice to mariners: the Skerry Nine harbour entrance is dredged to 9.5 metres from 1 March."
HARBOUR_QUESTION = "How deep is the Skerry Nine harbour entrance dredged?"


async def test_a_url_upsert_is_fetched_by_ingest_and_indexed(
    gateway: httpx.AsyncClient, webhook_connector: dict[str, Any], document_host: str
) -> None:
    item_id = f"notice-{uuid.uuid4().hex[:6]}"
    url = f"{document_host}/notices/harbour.txt"
    body = document_event("document.upserted", item_id, title="Harbour notice", url=url)
    response = await post_signed_webhook(webhook_connector["webhook_url"], webhook_connector["signing_secret"], body)
    assert response.status_code == 202, response.text
    document_id = f"{webhook_connector['connector_id']}:{item_id}"
    indexed = await wait_for_document(gateway, document_id, {"indexed", "failed"}, title="Harbour notice")
    assert indexed["status"] == "indexed", indexed
    assert indexed["metadata"]["source_uri"] == url and indexed["chunk_count"] >= 1
    await wait_until_cited(gateway, HARBOUR_QUESTION, document_id)


async def test_removing_with_purge_deletes_the_connectors_documents(gateway: httpx.AsyncClient) -> None:
    created = await create_connector(gateway, "webhook")
    SIGNING_SECRETS.append(created["signing_secret"])
    connector_id = created["connector_id"]
    ids = [f"note-{n}" for n in range(2)]
    for item_id in ids:
        body = upsert(item_id, f"Purge note {item_id} about tide tables in Skerry Nine.", item_id)
        assert (await post_signed_webhook(created["webhook_url"], created["signing_secret"], body)).status_code == 202
    for item_id in ids:
        await wait_for_document(gateway, f"{connector_id}:{item_id}")
    status = await wait_for_connector(gateway, connector_id, lambda c: c["items_synced"] >= 2, "two items synced")
    assert status["last_notification_at"] is not None

    removal = await gateway.delete(f"/v1/connectors/{connector_id}", params={"purge": "true"})
    assert removal.status_code == 202, removal.text
    for item_id in ids:
        await wait_for_document(gateway, f"{connector_id}:{item_id}", {"deleted"})
    await wait_for_connector(gateway, connector_id, lambda c: c["status"] == "removed", "removed")
    after = await post_signed_webhook(created["webhook_url"], created["signing_secret"], upsert("late", "x", "late"))
    assert after.status_code == 404


async def test_no_signing_secret_reached_a_service_log(system: LocalServices) -> None:
    """Last in the module: the service logs (one file per service under system.log_dir) hold none of the
    `whsec_` secrets of the connectors above, nor any `whsec_` at all."""
    assert SIGNING_SECRETS, "run with the tests above: they create the connectors"
    logs = {path.name: path.read_text(errors="replace") for path in sorted(system.log_dir.glob("*.log"))}
    assert logs, f"no service logs under {system.log_dir}"
    secrets = {f"signing secret {n}": secret for n, secret in enumerate(SIGNING_SECRETS)}
    secrets |= {f"signing key {n}": secret.removeprefix("whsec_") for n, secret in enumerate(SIGNING_SECRETS)}
    secrets["a whsec_ secret"] = "whsec_"
    leaked = [f"{name} in {log}" for name, secret in secrets.items() for log, text in logs.items() if secret in text]
    assert leaked == []
