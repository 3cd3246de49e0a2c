"""SharePoint through Microsoft Graph, end to end: a `sharepoint` connector against the Graph stand-in
(tests/standins/graph_server.py), which subscribes through our real gateway (validation handshake included) and
notifies it of every change; the connectors worker reads the delta feed and the documents go through the real
pipeline. The stand-in is shared by the session, so every test works on files of its own."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_devstack.system import LocalServices
from standins.graph_notifications import GraphSubscription
from standins.graph_server import GraphStandin
from support.connectors import (
    audit_entries,
    connector_status,
    create_connector,
    published_notifications,
    wait_for_connector,
    wait_for_document,
    wait_until,
    wait_until_cited,
)

pytestmark = pytest.mark.e2e
TENANT = "default"
ADMIN_TOKEN = "admin-token-for-e2e-tests-32-chars-min"
FAR_AHEAD = timedelta(days=28)  # the worker asks Graph for 29 days


@pytest.fixture(scope="module")
async def client(system: LocalServices) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": "Bearer dev-key"}
    async with httpx.AsyncClient(base_url=system.gateway_url, headers=headers, timeout=60) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def sharepoint(client: httpx.AsyncClient, graph: GraphStandin) -> AsyncIterator[dict[str, Any]]:
    """One `sharepoint` connector on the stand-in's library for the module, subscribed and enumerated."""
    created = await create_connector(
        client,
        "sharepoint",
        name="Engineering library",
        config={"tenant": graph.tenant_id, "client_id": graph.client_id, "drive_id": graph.drive_id},
        secrets={"client_secret": graph.client_secret},
    )
    connector_id = created["connector_id"]
    await wait_for_connector(
        client,
        connector_id,
        lambda c: c["subscription_expires_at"] is not None and c["last_sync_at"] is not None,
        "subscribed and enumerated",
    )
    yield created
    await client.delete(f"/v1/connectors/{connector_id}", params={"purge": "true"})


@pytest.fixture
def notifications_dropped(graph: GraphStandin) -> Iterator[None]:
    """Changes in the drive notify nobody for the test (lost notifications)."""
    graph.subscriptions.auto_notify = False
    try:
        yield
    finally:
        graph.subscriptions.auto_notify = True


def subscription_of(graph: GraphStandin, webhook_url: str) -> GraphSubscription | None:
    return next((sub for sub in graph.subscriptions.live() if sub.notification_url == webhook_url), None)


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


async def test_validation_handshake_echoes_the_decoded_token(sharepoint: dict[str, Any], graph: GraphStandin) -> None:
    token = "Validation: Testing client application reachability & more+plus"
    async with httpx.AsyncClient() as anonymous:
        response = await anonymous.post(f"{sharepoint['webhook_url']}?validationToken={quote(token, safe='')}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == token
    # The worker's own subscription passed the stand-in's handshakes on both URLs.
    sub = subscription_of(graph, sharepoint["webhook_url"])
    assert sub is not None and sub.lifecycle_url == sharepoint["webhook_url"] and sub.client_state
    handshakes = [v.accepted for v in graph.subscriptions.validations if v.url == sharepoint["webhook_url"]]
    assert len(handshakes) >= 2 and all(handshakes)


async def test_create_edit_rename_delete_restore_follow_the_library(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin
) -> None:
    connector_id = sharepoint["connector_id"]
    folder = graph.create_folder(unique("Runbooks"))
    name = f"{unique('tern')}.txt"
    item = graph.create_file(
        name, "The Arctic tern colony on Halvøy island hatches its chicks in the third week of June.", parent_id=folder
    )
    document_id = f"{connector_id}:{item}"
    question = "When does the Arctic tern colony on Halvøy island hatch its chicks?"
    indexed = await wait_for_document(client, document_id, version=1)
    metadata = indexed["metadata"]
    assert indexed["title"] == name
    assert (metadata["provider"], metadata["item_id"], metadata["author"]) == ("sharepoint", item, "Adele Vance")
    assert metadata["path"].endswith(f"/{name}") and metadata["web_url"].startswith("https://contoso.sharepoint.com")
    assert metadata["source_uri"].endswith(f"/items/{item}") and metadata["modified_at"]
    assert "sitegroup:Engineering Owners" in json.loads(metadata["permissions"])
    await wait_until_cited(client, question, document_id)

    graph.edit(item, "The Arctic tern colony on Halvøy island now hatches its chicks in early July.")
    await wait_for_document(client, document_id, version=2)
    renamed = f"{unique('tern-final')}.txt"
    graph.rename(item, renamed)
    assert (await wait_for_document(client, document_id, version=3))["title"] == renamed
    await wait_until_cited(client, question, document_id)

    graph.delete(item)
    await wait_for_document(client, document_id, {"deleted"})
    await wait_until_cited(client, question, document_id, cited=False)
    graph.restore(item)
    assert (await wait_for_document(client, document_id, version=4))["title"] == renamed
    await wait_until_cited(client, question, document_id)
    # Every change reached the gateway as a notification it accepted (no poll was needed).
    assert {d.status for d in await graph.settled() if d.url == sharepoint["webhook_url"]} <= {202}


@pytest.mark.parametrize("retry_after", [2, None], ids=["retry-after", "backoff"])
async def test_throttled_delta_still_delivers_the_change(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin, retry_after: int | None
) -> None:
    delta_calls = len([r for r in graph.requests if r.path.endswith("/root/delta")])
    started = time.monotonic()
    graph.throttle(2, retry_after=retry_after)
    item = graph.create_file(f"{unique('throttled')}.txt", "Throttled delivery of the quarterly kelp harvest figures.")
    await wait_for_document(client, f"{sharepoint['connector_id']}:{item}", version=1)
    if retry_after is not None:  # at least one throttled call was retried only after the time Graph asked for
        assert time.monotonic() - started >= retry_after
    assert len([r for r in graph.requests if r.path.endswith("/root/delta")]) >= delta_calls + 2


async def test_expired_delta_token_re_enumerates_without_losing_a_delete(
    client: httpx.AsyncClient,
    sharepoint: dict[str, Any],
    graph: GraphStandin,
    notifications_dropped: None,
) -> None:
    connector_id = sharepoint["connector_id"]
    kept = graph.create_file(f"{unique('kept')}.txt", "Kept: the lighthouse fuel ledger for the winter season.")
    doomed = graph.create_file(f"{unique('doomed')}.txt", "Doomed: the outdated ferry timetable for Skerry Four.")
    await graph.notify()
    for item in (kept, doomed):
        await wait_for_document(client, f"{connector_id}:{item}", version=1)
    mark = len(graph.requests)

    # While the delta token is expired the file is deleted: a fresh enumeration no longer lists it at all.
    graph.expire_delta_tokens()
    graph.delete(doomed)
    added = graph.create_file(f"{unique('added')}.txt", "Added: the new ferry timetable for Skerry Four.")
    await graph.notify()
    await wait_for_document(client, f"{connector_id}:{doomed}", {"deleted"})
    await wait_for_document(client, f"{connector_id}:{added}", version=1)
    assert (await wait_for_document(client, f"{connector_id}:{kept}"))["version"] == 1  # re-checked, unchanged
    fresh = [r for r in graph.requests[mark:] if r.path.endswith("/root/delta") and "token" not in r.query]
    assert fresh, "the worker never restarted the enumeration"


async def test_dropped_notification_is_repaired_by_the_periodic_poll(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin, notifications_dropped: None
) -> None:
    delivered = len(graph.subscriptions.deliveries)
    item = graph.create_file(f"{unique('unnoticed')}.txt", "Nobody was told about the glacier survey of Brattfonna.")
    await wait_for_document(client, f"{sharepoint['connector_id']}:{item}", version=1, timeout_s=45)
    assert len(graph.subscriptions.deliveries) == delivered  # no notification carried it: the poll did


async def test_reauthorization_required_renews_the_subscription(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin
) -> None:
    sub = subscription_of(graph, sharepoint["webhook_url"])
    assert sub is not None
    mark = len(graph.requests)
    deliveries = await graph.lifecycle("reauthorizationRequired", sub.id)
    assert [d.status for d in deliveries] == [202]
    await wait_until(lambda: _renewed(graph, sub, mark), "the subscription renewed (PATCH)")
    # Renewed, change notifications flow again.
    item = graph.create_file(f"{unique('after-renewal')}.txt", "Notes from after the renewal of the subscription.")
    await wait_for_document(client, f"{sharepoint['connector_id']}:{item}", version=1)
    assert any(d.status == 202 for d in await graph.settled() if d.url == sharepoint["webhook_url"])


async def _renewed(graph: GraphStandin, sub: GraphSubscription, mark: int) -> bool:
    patched = any(r.method == "PATCH" and r.path.endswith(f"/subscriptions/{sub.id}") for r in graph.requests[mark:])
    return patched and not sub.needs_reauthorization


async def test_subscription_about_to_expire_is_renewed_by_the_scheduler(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin, migrated_database: str
) -> None:
    """Time passes: the subscription is an hour from expiry at Graph and in our sync state, well inside
    CONNECTORS_RENEW_BEFORE_S (a day), so the scheduler's RENEW must extend it."""
    connector_id = sharepoint["connector_id"]
    sub = subscription_of(graph, sharepoint["webhook_url"])
    assert sub is not None
    soon = datetime.now(UTC) + timedelta(hours=1)
    sub.expires = soon
    with psycopg.connect(migrated_database) as connection:
        connection.execute(
            "UPDATE connector_sync_state SET subscription_expires_at = %s WHERE connector_id = %s", (soon, connector_id)
        )
    far = datetime.now(UTC) + FAR_AHEAD
    status = await wait_for_connector(
        client, connector_id, lambda c: datetime.fromisoformat(c["subscription_expires_at"]) > far, "renewed"
    )
    assert sub.expires > far and subscription_of(graph, sharepoint["webhook_url"]) is sub, status


async def test_removed_subscription_is_recreated(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin
) -> None:
    old = subscription_of(graph, sharepoint["webhook_url"])
    assert old is not None
    deliveries = await graph.lifecycle("subscriptionRemoved", old.id)
    assert [d.status for d in deliveries] == [202]
    new = await wait_until(
        lambda: _replaced(graph, sharepoint["webhook_url"], old.id), "a new subscription", timeout_s=30
    )
    assert new.client_state == old.client_state
    item = graph.create_file(f"{unique('after-recreate')}.txt", "Written once the subscription was recreated.")
    await wait_for_document(client, f"{sharepoint['connector_id']}:{item}", version=1)


async def _replaced(graph: GraphStandin, webhook_url: str, old_id: str) -> GraphSubscription | None:
    sub = subscription_of(graph, webhook_url)
    return sub if sub is not None and sub.id != old_id else None


async def test_forged_client_state_is_refused_and_nothing_published(
    client: httpx.AsyncClient,
    sharepoint: dict[str, Any],
    graph: GraphStandin,
    kafka_admin: KafkaSettings,
    system: LocalServices,
) -> None:
    connector_id = sharepoint["connector_id"]
    await graph.settled()
    before = len(await published_notifications(kafka_admin, TENANT, connector_id))
    sub = subscription_of(graph, sharepoint["webhook_url"])
    assert sub is not None
    deliveries = await graph.notify(sub.id, client_state="forged-client-state")
    assert [d.status for d in deliveries] == [403]
    assert len(await published_notifications(kafka_admin, TENANT, connector_id)) == before
    rejected = await wait_until(lambda: _rejections(system, connector_id), "the forgery audited")
    assert rejected[0]["details"]["reason"] == "client_state_mismatch"
    assert sub.client_state and sub.client_state not in json.dumps(rejected)
    assert "client_state" not in (await connector_status(client, connector_id))["config"]


async def _rejections(system: LocalServices, connector_id: str) -> list[dict[str, Any]] | None:
    found = await audit_entries(
        system.gateway_url, ADMIN_TOKEN, TENANT, action="connector.notification.rejected", resource=connector_id
    )
    return found or None
