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
from prometheus_client.parser import text_string_to_metric_families
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
    indexed = await wait_for_document(client, document_id, version=1, title=name)
    metadata = indexed["metadata"]
    assert (metadata["provider"], metadata["item_id"], metadata["author"]) == ("sharepoint", item, "Adele Vance")
    assert metadata["path"].endswith(f"/{name}") and metadata["web_url"].startswith("https://contoso.sharepoint.com")
    assert metadata["source_uri"].endswith(f"/items/{item}") and metadata["modified_at"]
    assert "sitegroup:Engineering Owners" in json.loads(metadata["permissions"])
    await wait_until_cited(client, question, document_id)

    graph.edit(item, "The Arctic tern colony on Halvøy island now hatches its chicks in early July.")
    await wait_for_document(client, document_id, version=2)
    renamed = f"{unique('tern-final')}.txt"
    graph.rename(item, renamed)
    # The title comes with the registration, which may land after the pipeline's status for the version.
    await wait_for_document(client, document_id, version=3, title=renamed)
    await wait_until_cited(client, question, document_id)

    graph.delete(item)
    await wait_for_document(client, document_id, {"deleted"})
    await wait_until_cited(client, question, document_id, cited=False)
    graph.restore(item)
    await wait_for_document(client, document_id, version=4, title=renamed)
    await wait_until_cited(client, question, document_id)
    # Every change reached the gateway as a notification it accepted (no poll was needed).
    assert {d.status for d in await graph.settled() if d.url == sharepoint["webhook_url"]} <= {202}


@pytest.mark.parametrize("retry_after", [2, None], ids=["retry-after", "backoff"])
async def test_throttled_delta_still_delivers_the_change(
    client: httpx.AsyncClient,
    sharepoint: dict[str, Any],
    graph: GraphStandin,
    metrics_ports: dict[str, int],
    retry_after: int | None,
) -> None:
    delta_calls = len([r for r in graph.requests if r.path.endswith("/root/delta")])
    before = await worker_metrics(metrics_ports)
    started = time.monotonic()
    graph.throttle(2, retry_after=retry_after)
    item = graph.create_file(f"{unique('throttled')}.txt", "Throttled delivery of the quarterly kelp harvest figures.")
    await wait_for_document(client, f"{sharepoint['connector_id']}:{item}", version=1)
    if retry_after is not None:  # at least one throttled call was retried only after the time Graph asked for
        assert time.monotonic() - started >= retry_after
    assert len([r for r in graph.requests if r.path.endswith("/root/delta")]) >= delta_calls + 2
    # The worker's /metrics tell the same story: both 429s counted, and the syncs that listed the file.
    after = await worker_metrics(metrics_ports)
    throttled = "ragstream_connectors_provider_throttled_total"
    assert after.get(throttled, 0) - before.get(throttled, 0) >= 2, (before, after)
    per_sync = "ragstream_connectors_items_per_sync"
    assert after[f"{per_sync}_count"] > before.get(f"{per_sync}_count", 0)
    assert after[f"{per_sync}_sum"] - before.get(f"{per_sync}_sum", 0) >= 1


async def worker_metrics(metrics_ports: dict[str, int]) -> dict[str, float]:
    """The connectors worker's `sharepoint` samples on its /metrics listener, by sample name."""
    async with httpx.AsyncClient(timeout=10) as scraper:
        response = await scraper.get(f"http://127.0.0.1:{metrics_ports['connectors']}/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.labels.get("provider") == "sharepoint" and "le" not in sample.labels
    }


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


async def test_a_refused_download_link_is_reported_without_its_credential(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin, system: LocalServices
) -> None:
    """SharePoint's download host refuses the pre-authenticated link (expired or revoked tempauth) on every
    attempt: the item is skipped and the connector reports why, naming the host but never the link."""
    connector_id = sharepoint["connector_id"]
    graph.refuse_downloads(5)  # the worker's attempts at one download, each with a fresh link
    item = graph.create_file(f"{unique('refused')}.txt", "The Brattvåg ferry quay has two ramps and one crane.")
    status = await wait_for_connector(
        client, connector_id, lambda c: item in (c["last_error"] or ""), "the refusal recorded", timeout_s=90
    )
    error = status["last_error"]
    assert "403 from the download host localhost" in error, error
    assert "tempauth" not in error and "download.aspx" not in error and "?" not in error
    assert leaked(system, {"a tempauth link": "tempauth="}) == []

    graph.edit(item, "The Brattvåg ferry quay has two ramps, one crane and a new waiting room.")
    await wait_for_document(client, f"{connector_id}:{item}", version=1)  # read once the host serves it again


async def test_a_resync_removes_what_the_library_no_longer_lists(
    client: httpx.AsyncClient, sharepoint: dict[str, Any], graph: GraphStandin
) -> None:
    connector_id = sharepoint["connector_id"]
    kept = graph.create_file(f"{unique('listed')}.txt", "Listed: the Nordkapp weather station logs wind at noon.")
    gone = graph.create_file(f"{unique('unlisted')}.txt", "Unlisted: the Nordkapp station's retired barometer.")
    for item in (kept, gone):
        await wait_for_document(client, f"{connector_id}:{item}", version=1)
    graph.vanish(gone)  # no delta change, no notification: only a full enumeration can tell

    response = await client.post(f"/v1/connectors/{connector_id}/sync")
    assert response.status_code == 202, response.text
    await wait_for_document(client, f"{connector_id}:{gone}", {"deleted"})
    assert (await wait_for_document(client, f"{connector_id}:{kept}"))["version"] == 1


async def test_removing_a_connector_deletes_its_subscription(client: httpx.AsyncClient, graph: GraphStandin) -> None:
    created = await create_connector(
        client,
        "sharepoint",
        name="Short-lived library",
        config={"tenant": graph.tenant_id, "client_id": graph.client_id, "drive_id": graph.drive_id},
        secrets={"client_secret": graph.client_secret},
    )
    connector_id, webhook_url = created["connector_id"], created["webhook_url"]
    await wait_for_connector(client, connector_id, lambda c: c["subscription_expires_at"] is not None, "subscribed")
    sub = subscription_of(graph, webhook_url)
    assert sub is not None

    response = await client.delete(f"/v1/connectors/{connector_id}", params={"purge": "true"})
    assert response.status_code == 202, response.text
    await wait_for_connector(client, connector_id, lambda c: c["status"] == "removed", "removed")
    await wait_until(lambda: _unsubscribed(graph, webhook_url), "the subscription deleted at Graph", timeout_s=30)
    deleted = [r for r in graph.requests if r.method == "DELETE" and r.path.endswith(f"/subscriptions/{sub.id}")]
    assert deleted and deleted[0].headers["authorization"].startswith("Bearer ")


async def _unsubscribed(graph: GraphStandin, webhook_url: str) -> bool:
    return subscription_of(graph, webhook_url) is None


async def test_no_credential_reached_a_service_log(
    sharepoint: dict[str, Any], graph: GraphStandin, system: LocalServices
) -> None:
    """Last in the module: after every test above, the service logs hold none of the credentials in play (the
    client secret, the clientState, the access tokens and tempauth values the stand-in handed out)."""
    known = graph.known_secrets()
    assert len(known) >= 3, known.keys()  # a clientState and issued tokens, not only the client secret
    assert leaked(system, {**known, "a tempauth link": "tempauth="}) == []


def leaked(system: LocalServices, secrets: dict[str, str]) -> list[str]:
    """`<secret name> in <log>` for every secret that appears in a service's log (tests/support: one log file
    per service under system.log_dir)."""
    logs = {path.name: path.read_text(errors="replace") for path in sorted(system.log_dir.glob("*.log"))}
    assert logs, f"no service logs under {system.log_dir}"
    return [
        f"{name} in {log}" for name, secret in secrets.items() if secret for log, text in logs.items() if secret in text
    ]
