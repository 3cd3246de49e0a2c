"""The Microsoft Graph provider (SharePoint/OneDrive) against the Graph stand-in over real HTTP: delta paging and
incremental changes, the deleted facet, expired tokens, throttling, streamed content through the pre-authenticated
redirect, and the subscription's validation, renewal, lifecycle and removal."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ragstream_connectors.providers.base import ChangePage, ConnectorContext, CursorExpired, ItemChange, ProviderError
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.graph import GraphProvider
from ragstream_connectors.providers.http import RetryPolicy
from standins.graph_server import GraphStandin
from standins.server import StandinServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

pytestmark = pytest.mark.integration

CLIENT_STATE = "client-state-0123456789abcdef0123456789abcdef"
POLICY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)


class NotificationEndpoint:
    """Where the stand-in sends validation requests and notifications (the gateway's webhook URL in the product):
    answers the handshake with the decoded token as text/plain and records what is posted."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.received: list[bytes] = []
        self.echo_token = True

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/webhooks/{connector_id}", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            self.tokens.append(token)
            return PlainTextResponse(token if self.echo_token else token.replace(" ", "%20"))
        self.received.append(await request.body())
        return Response(status_code=202)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[tuple[NotificationEndpoint, str]]:
    receiver = NotificationEndpoint()
    with StandinServer(receiver.app(), name="graph-webhook-receiver") as server:
        yield receiver, f"{server.base_url}/v1/webhooks/con_0123456789abcdef"


@pytest.fixture
def graph() -> Iterator[GraphStandin]:
    with GraphStandin(page_size=3) as standin:
        yield standin


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
async def provider(graph: GraphStandin, sleeps: Sleeps) -> AsyncIterator[GraphProvider]:
    made = provider_for(graph, sleeps=sleeps)
    yield made
    await made.aclose()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def provider_for(
    graph: GraphStandin,
    *,
    webhook_url: str = "http://127.0.0.1:9/unused",
    secret: str | None = None,
    sleeps: Sleeps | None = None,
) -> GraphProvider:
    context = ConnectorContext(
        tenant_id="t1",
        connector_id="con_0123456789abcdef",
        provider="sharepoint",
        config={"tenant": graph.tenant_id, "client_id": graph.client_id, "drive_id": graph.drive_id},
        secrets={"client_secret": secret or graph.client_secret, "client_state": CLIENT_STATE},
        webhook_url=webhook_url,
    )
    endpoints = ProviderEndpoints(graph_api_url=graph.api_url, microsoft_login_url=graph.login_url)
    return GraphProvider(context, endpoints, policy=POLICY, sleep=sleeps if sleeps is not None else Sleeps())


async def all_pages(provider: GraphProvider, cursor: str | None) -> list[ChangePage]:
    return [page async for page in provider.changes(cursor)]


def latest(pages: list[ChangePage]) -> dict[str, ItemChange]:
    """What applying the pages in order leaves: the last copy of each item."""
    return {change.item_id: change for page in pages for change in page.changes}


def requests_to(graph: GraphStandin, suffix: str) -> list[Any]:
    return [request for request in graph.requests if request.path.endswith(suffix)]


async def test_full_enumeration_follows_next_links_to_the_delta_link(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    reports = graph.create_folder("Reports")
    graph.share_link(reports)
    year = graph.create_folder("2024", parent_id=reports)
    q1 = graph.create_file("q1 results.txt", "Revenue rose.", parent_id=reports)
    plan = graph.create_file("plan.md", "# Plan", parent_id=year, mime_type="text/markdown")
    graph.create_file("readme.txt", "Hello.")
    graph.create_file("notes.txt", "Notes.", parent_id=year)
    graph.share(q1, "bob@contoso.example")

    pages = await all_pages(provider, None)

    assert [page.final for page in pages] == [False, False, True]  # 7 items and the root, 3 a page
    assert all(page.cursor.startswith(f"{graph.api_url}/drives/") for page in pages)
    items = latest(pages)
    assert len(items) == 7
    root = items[graph.root_id]
    assert not root.is_file and root.path == "/"
    assert not items[reports].is_file and items[year].path == "/Reports/2024"
    first = items[q1]
    assert first.is_file and not first.deleted
    assert (first.name, first.path, first.content_type, first.size_bytes) == (
        "q1 results.txt",
        "/Reports/q1 results.txt",
        "text/plain",
        len("Revenue rose."),
    )
    assert first.author == "Adele Vance" and first.modified_at is not None
    assert first.web_url.endswith("/Shared%20Documents/Reports/q1%20results.txt")
    assert first.version_tag.startswith("qxh:")  # SharePoint's delta sends no cTag: the content hash stands in
    assert first.source_uri == f"{graph.api_url}/drives/{graph.drive_id}/items/{q1}"
    assert first.extra["drive_id"] == graph.drive_id
    assert {"sitegroup:Engineering Owners", "user:bob@contoso.example", "link:organization"} <= set(first.permissions)
    assert items[plan].path == "/Reports/2024/plan.md" and items[plan].content_type == "text/markdown"
    # Every folder came with the feed before its children: none had to be fetched to build a path.
    assert not [request for request in graph.requests if request.path.endswith((reports, year, graph.root_id))]


async def test_incremental_changes_edit_rename_move_delete_and_restore(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    reports = graph.create_folder("Reports")
    archive = graph.create_folder("Archive")
    edited = graph.create_file("edited.txt", "v1", parent_id=reports)
    renamed = graph.create_file("old name.txt", "same", parent_id=reports)
    moved = graph.create_file("moved.txt", "moving", parent_id=reports)
    gone = graph.create_file("gone.txt", "bye", parent_id=reports)
    baseline = latest(pages := await all_pages(provider, None))
    cursor = pages[-1].cursor

    added = graph.create_file("added.txt", "new", parent_id=reports)
    graph.edit(edited, "v2")
    graph.rename(renamed, "new name.txt")
    graph.move(moved, archive)
    graph.delete(gone)
    pages = await all_pages(provider, cursor)

    changes = latest(pages)
    assert set(changes) == {added, edited, renamed, moved, gone} and pages[-1].final
    assert changes[added].path == "/Reports/added.txt" and changes[added].is_file
    assert changes[edited].version_tag != baseline[edited].version_tag
    assert changes[renamed].version_tag == baseline[renamed].version_tag  # a rename leaves the content tag
    assert (changes[renamed].name, changes[renamed].path) == ("new name.txt", "/Reports/new name.txt")
    assert changes[moved].path == "/Archive/moved.txt"
    assert changes[gone].deleted and changes[gone].name == ""  # SharePoint sends no name for deleted items
    # The folders were not in this feed: each was fetched once to learn its path.
    assert len(requests_to(graph, f"/items/{reports}")) == 1

    graph.restore(gone)
    restored = latest(await all_pages(provider, pages[-1].cursor))
    assert set(restored) == {gone} and not restored[gone].deleted
    assert restored[gone].path == "/Reports/gone.txt"


async def test_folder_deletion_reports_every_item_below_it_deleted(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    folder = graph.create_folder("Team")
    files = [graph.create_file(f"f{n}.txt", f"{n}", parent_id=folder) for n in range(2)]
    cursor = (await all_pages(provider, None))[-1].cursor
    graph.delete(folder)
    changes = latest(await all_pages(provider, cursor))
    assert set(changes) == {folder, *files} and all(change.deleted for change in changes.values())
    assert not changes[folder].is_file


async def test_an_item_changed_while_paging_appears_again_and_its_last_copy_wins(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    ids = [graph.create_file(f"doc{n}.txt", f"first {n}") for n in range(5)]
    pages: list[ChangePage] = []
    async for page in provider.changes(None):
        if not pages:
            graph.edit(ids[0], "second version")  # changed after its page was read
        pages.append(page)

    copies = [change for page in pages for change in page.changes if change.item_id == ids[0]]
    assert len(copies) == 2 and copies[0].version_tag != copies[1].version_tag
    content = graph.drive.items[ids[0]].content
    assert content is not None and latest(pages)[ids[0]].version_tag == f"qxh:{content.quick_xor}"


async def test_an_expired_delta_token_raises_cursor_expired_and_enumeration_starts_over(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    kept = graph.create_file("kept.txt", "still here")
    cursor = (await all_pages(provider, None))[-1].cursor
    graph.expire_delta_tokens()

    with pytest.raises(CursorExpired):
        await all_pages(provider, cursor)
    assert kept in latest(await all_pages(provider, None))


async def test_a_cursor_outside_the_configured_graph_url_is_never_followed(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    for foreign in ("https://attacker.example/v1.0/drives/x/root/delta?token=1", f"{graph.api_url}.evil/delta"):
        with pytest.raises(CursorExpired):
            await all_pages(provider, foreign)
    assert not graph.requests


async def test_throttled_delta_waits_what_retry_after_says(
    graph: GraphStandin, provider: GraphProvider, sleeps: Sleeps
) -> None:
    graph.create_file("a.txt", "a")
    graph.throttle(2, retry_after=7)
    pages = await all_pages(provider, None)
    assert pages[-1].final and sleeps == [7.0, 7.0]
    assert len(requests_to(graph, "/root/delta")) == 3


async def test_throttling_without_retry_after_backs_off_with_jitter(
    graph: GraphStandin, provider: GraphProvider, sleeps: Sleeps
) -> None:
    graph.throttle(2)
    graph.throttle(1, status=503, retry_after=2)
    pages = await all_pages(provider, None)
    assert pages[-1].final and len(sleeps) == 3
    assert 0 <= sleeps[0] <= POLICY.base_delay_s and 0 <= sleeps[1] <= POLICY.base_delay_s * 2
    assert sleeps[2] == 2.0  # the 503 said how long


async def test_content_streams_through_the_redirect_without_the_bearer(
    graph: GraphStandin, provider: GraphProvider, tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024 + 123
    big = graph.create_file("big report.txt", size=size)
    item = latest(await all_pages(provider, None))[big]

    downloaded = await provider.download(item, tmp_path)

    assert (downloaded.size_bytes, downloaded.sha256) == (size, graph.sha256(big))
    assert hashlib.sha256(downloaded.path.read_bytes()).hexdigest() == graph.sha256(big)
    assert downloaded.content_type == "text/plain" and downloaded.path.parent == tmp_path
    (content_request,) = requests_to(graph, f"/items/{big}/content")
    (download_request,) = requests_to(graph, "/download.aspx")
    assert content_request.headers["authorization"].startswith("Bearer ")
    assert "authorization" not in download_request.headers and download_request.headers["host"].startswith("localhost")


async def test_a_throttled_download_honours_retry_after(
    graph: GraphStandin, provider: GraphProvider, sleeps: Sleeps, tmp_path: Path
) -> None:
    doc = graph.create_file("doc.txt", "body")
    item = latest(await all_pages(provider, None))[doc]
    graph.throttle(1, retry_after=3, path_prefix="/_layouts/")
    downloaded = await provider.download(item, tmp_path)
    assert downloaded.sha256 == graph.sha256(doc) and sleeps == [3.0]


async def test_a_refused_download_link_is_replaced_and_never_named(
    graph: GraphStandin, provider: GraphProvider, sleeps: Sleeps, tmp_path: Path
) -> None:
    doc = graph.create_file("doc.txt", "body")
    item = latest(await all_pages(provider, None))[doc]
    graph.refuse_downloads(1)  # an expired tempauth: the next attempt asks Graph for a new link
    downloaded = await provider.download(item, tmp_path)
    assert downloaded.sha256 == graph.sha256(doc) and len(requests_to(graph, f"/items/{doc}/content")) == 2

    graph.refuse_downloads(POLICY.max_attempts)
    with pytest.raises(ProviderError) as refused:
        await provider.download(item, tmp_path)
    error = refused.value
    assert (error.status, error.transient, error.body) == (403, False, "")
    assert str(error).endswith(f"/items/{doc}/content: 403 from the download host localhost")
    assert "tempauth" not in str(error) and "download.aspx" not in str(error)


async def test_subscription_validated_notified_renewed_reauthorized_and_removed(
    graph: GraphStandin, endpoint: tuple[NotificationEndpoint, str]
) -> None:
    receiver, webhook_url = endpoint
    receiver.tokens.clear()
    receiver.received.clear()
    provider = provider_for(graph, webhook_url=webhook_url)
    try:
        subscription = await provider.subscribe(None)
        assert subscription is not None and subscription.resource == f"/drives/{graph.drive_id}/root"
        (created,) = graph.subscriptions.by_id.values()
        assert (created.notification_url, created.lifecycle_url, created.client_state) == (
            webhook_url,
            webhook_url,
            CLIENT_STATE,
        )
        # Both URLs were validated; the endpoint saw the token decoded (it has spaces and a colon).
        assert len(receiver.tokens) == 2 and receiver.tokens[0].startswith("Validation: Testing client")
        assert subscription.expires_at is not None
        assert abs(subscription.expires_at - (datetime.now(UTC) + timedelta(days=29))) < timedelta(minutes=1)

        graph.create_file("new.txt", "hello")
        assert [delivery.status for delivery in await graph.settled()] == [202]
        assert (await provider.plan(receiver.received[-1], {})).sync
        await graph.notify(client_state="forged")
        assert not (await provider.plan(receiver.received[-1], {})).sync

        await graph.lifecycle("reauthorizationRequired")
        plan = await provider.plan(receiver.received[-1], {})
        assert plan.renew and not plan.sync
        graph.create_file("while paused.txt", "x")
        assert await graph.settled() == []  # paused until the app renews
        renewed = await provider.subscribe(subscription)
        assert renewed is not None and renewed.subscription_id == subscription.subscription_id
        graph.create_file("after renewal.txt", "y")
        assert len(await graph.settled()) == 1

        graph.expire_subscription()
        recreated = await provider.subscribe(renewed)  # the renewal finds it gone (404): a new one
        assert recreated is not None and recreated.subscription_id != subscription.subscription_id
        await provider.unsubscribe(recreated)
        assert not graph.subscriptions.live()
        await provider.unsubscribe(recreated)  # already gone: nothing to do
    finally:
        await provider.aclose()


async def test_subscription_refused_when_the_endpoint_fails_validation(
    graph: GraphStandin, endpoint: tuple[NotificationEndpoint, str]
) -> None:
    receiver, webhook_url = endpoint
    receiver.echo_token = False  # answers the token still encoded
    provider = provider_for(graph, webhook_url=webhook_url)
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.subscribe(None)
        assert refused.value.status == 400 and not refused.value.transient
        assert not graph.subscriptions.by_id and not graph.subscriptions.validations[-1].accepted
    finally:
        receiver.echo_token = True
        await provider.aclose()


async def test_a_revoked_token_is_fetched_again_and_a_wrong_secret_is_permanent(
    graph: GraphStandin, provider: GraphProvider
) -> None:
    await all_pages(provider, None)
    graph.revoke_tokens()
    assert (await all_pages(provider, None))[-1].final
    assert len(requests_to(graph, "/oauth2/v2.0/token")) == 2
    token_form = requests_to(graph, "/oauth2/v2.0/token")[0].body.decode()
    assert "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default" in token_form

    wrong = provider_for(graph, secret="not-the-secret")
    try:
        with pytest.raises(ProviderError) as refused:
            await all_pages(wrong, None)
        assert refused.value.status == 401 and not refused.value.transient
    finally:
        await wrong.aclose()
