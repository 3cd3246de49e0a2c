"""The Google Drive provider against the Drive stand-in (tests/standins/drive_server.py): first sync and paging,
incremental changes and their delete signals, refused page tokens, throttling (429 and 403 rate limits), streamed
downloads and exports, OAuth refresh, and push channels that really POST to a receiver."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from ragstream_connectors.providers.base import ChangePage, ConnectorContext, CursorExpired, ItemChange, ProviderError
from ragstream_connectors.providers.drive import DriveProvider, build
from ragstream_connectors.providers.drive_items import is_rate_limited
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.http import OAuthToken, ProviderHttp, RetryPolicy
from standins.drive_server import DriveStandin, Person
from standins.server import StandinServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "cid.apps.googleusercontent.com", "client-secret", "refresh-token"
CHANNEL_TOKEN = "channel-token-3f9a1c"
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01)
ALICE = Person("Alice Example", "alice@example.com")


class Receiver:
    """A webhook endpoint that records what Drive POSTs and answers the scripted statuses (then 200)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, str]] = []
        self.statuses: list[int] = []
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        self.server = StandinServer(app, name="drive-receiver")

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/hook"

    async def _hook(self, request: Request) -> Response:
        self.messages.append(
            {k.lower(): v for k, v in request.headers.items()} | {"body": (await request.body()).decode()}
        )
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def drive() -> Iterator[DriveStandin]:
    with DriveStandin(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN) as standin:
        yield standin


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    hook.server.start()
    yield hook
    hook.server.stop()


class Sleeps:
    """An injected sleep: records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def context_for(webhook_url: str = "https://gateway.example/v1/webhooks/con_0123456789abcdef", **config: str) -> Any:
    return ConnectorContext(
        tenant_id="t1",
        connector_id="con_0123456789abcdef",
        provider="gdrive",
        config={"client_id": CLIENT_ID, **config},
        secrets={"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN, "channel_token": CHANNEL_TOKEN},
        webhook_url=webhook_url,
    )


def endpoints_for(drive: DriveStandin) -> ProviderEndpoints:
    return ProviderEndpoints(drive_api_url=drive.api_url, google_token_url=drive.token_url)


def provider_for(
    drive: DriveStandin,
    *,
    page_size: int = 1000,
    sleeps: Sleeps | None = None,
    policy: RetryPolicy = FAST,
    refresh_token: str = REFRESH_TOKEN,
    **context: Any,
) -> DriveProvider:
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    token = OAuthToken(drive.token_url, form | {"refresh_token": refresh_token})
    sleep = sleeps or Sleeps()
    http = ProviderHttp("gdrive", token, policy=policy, sleep=sleep, is_throttled=is_rate_limited)
    return DriveProvider(context_for(**context), endpoints_for(drive), http, page_size=page_size)


async def pages_of(provider: DriveProvider, cursor: str | None) -> list[ChangePage]:
    return [page async for page in provider.changes(cursor)]


async def synced(provider: DriveProvider, cursor: str | None) -> tuple[dict[str, ItemChange], str]:
    """Every page from `cursor`: the items by id (last wins) and the cursor to save."""
    pages = await pages_of(provider, cursor)
    assert pages[-1].final and not any(page.final for page in pages[:-1])
    return {item.item_id: item for page in pages for item in page.changes}, pages[-1].cursor


@pytest.fixture
async def provider(drive: DriveStandin) -> AsyncIterator[DriveProvider]:
    built = provider_for(drive)
    yield built
    await built.aclose()


# --- first sync ---------------------------------------------------------------------------------------
async def test_first_sync_takes_the_start_token_first_then_lists_every_file_by_page(drive: DriveStandin) -> None:
    reports = drive.create_folder("Reports")
    q1 = drive.create_file("q1.txt", b"Revenue grew", parent=reports, modified_by=ALICE, readers=("bob@example.com",))
    plan = drive.create_google_doc("Plan", "# Plan\n\nShip it.")
    shortcut = drive.create_shortcut("q1 link", q1)
    binned = drive.create_file("old.txt", b"gone")
    drive.trash(binned)
    provider = provider_for(drive, page_size=2)
    try:
        pages = await pages_of(provider, None)
    finally:
        await provider.aclose()

    paths = [(r.method, r.path) for r in drive.requests if r.path.startswith("/drive/v3/")]
    assert paths[0] == ("GET", "/drive/v3/changes/startPageToken")
    listed = drive.requests_to("/files")
    assert [r.params["q"] for r in listed] == ["trashed = false"] * 2 and listed[0].params["pageSize"] == "2"
    assert [page.final for page in pages] == [False, True]
    assert pages[-1].cursor == "7"  # six changes before the sync began: the start token names the seventh
    items = {item.item_id: item for page in pages for item in page.changes}
    assert set(items) == {reports, q1, plan, shortcut}

    report = items[q1]
    assert (report.name, report.path, report.author, report.deleted, report.is_file) == (
        "q1.txt", "/Reports/q1.txt", "Alice Example", False, True
    )  # fmt: skip
    assert report.version_tag == f"md5:{hashlib.md5(b'Revenue grew').hexdigest()}"
    assert report.content_type == "text/plain" and report.size_bytes == len(b"Revenue grew")
    assert report.permissions == ("user:bob@example.com", "user:owner@example.com")
    assert report.web_url == f"https://drive.google.com/file/d/{q1}/view?usp=drivesdk"
    assert report.source_uri == f"{drive.api_url}/files/{q1}"
    assert report.modified_at is not None and abs(report.modified_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert items[plan].extra["export_mime"] == "text/markdown" and items[plan].content_type == "text/markdown"
    assert items[plan].version_tag.startswith("v:") and items[plan].is_file
    assert not items[reports].is_file and not items[shortcut].is_file


async def test_the_last_page_of_a_first_sync_saves_the_start_token(
    drive: DriveStandin, provider: DriveProvider
) -> None:
    drive.create_file("a.txt", b"a")
    _, cursor = await synced(provider, None)
    (start,) = drive.requests_to("/changes/startPageToken")
    assert cursor == "2"  # one change before the sync: the start page token names the next one
    assert drive.requests.index(start) < drive.requests.index(drive.requests_to("/files")[0])


async def test_an_interrupted_first_sync_resumes_from_its_page_cursor(drive: DriveStandin) -> None:
    ids = {drive.create_file(f"f{n}.txt", f"file {n}".encode()) for n in range(5)}
    provider = provider_for(drive, page_size=2)
    try:
        first = await anext(aiter(provider.changes(None)))
        assert not first.final and json.loads(first.cursor)["files_page"]
        rest, cursor = await synced(provider, first.cursor)  # as after a restart: from the saved cursor
    finally:
        await provider.aclose()
    assert {item.item_id for item in first.changes} | set(rest) == ids
    assert not {item.item_id for item in first.changes} & set(rest)
    assert cursor.isdigit()


async def test_changes_made_during_a_first_sync_are_replayed_from_the_start_token(drive: DriveStandin) -> None:
    drive.create_file("f1.txt", b"1")
    drive.create_file("f2.txt", b"2")
    provider = provider_for(drive, page_size=1)
    try:
        stream = provider.changes(None)
        await anext(aiter(stream))
        late = drive.create_file("late.txt", b"made while listing")
        pages = [page async for page in stream]
        replayed, _ = await synced(provider, pages[-1].cursor)
    finally:
        await provider.aclose()
    assert late in replayed


# --- incremental changes ----------------------------------------------------------------------------
async def test_create_edit_rename_trash_untrash_and_delete_arrive_as_changes(
    drive: DriveStandin, provider: DriveProvider
) -> None:
    _, cursor = await synced(provider, None)
    file_id = drive.create_file("notes.txt", b"first draft")
    items, cursor = await synced(provider, cursor)
    created = items[file_id]
    assert (created.name, created.deleted, created.path) == ("notes.txt", False, "/notes.txt")

    drive.edit(file_id, b"second draft")
    items, cursor = await synced(provider, cursor)
    edited = items[file_id]
    assert edited.version_tag != created.version_tag and edited.size_bytes == len(b"second draft")

    drive.rename(file_id, "notes-final.txt")
    items, cursor = await synced(provider, cursor)
    renamed = items[file_id]
    assert renamed.name == "notes-final.txt" and renamed.version_tag == edited.version_tag  # same bytes: no download

    drive.trash(file_id)
    items, cursor = await synced(provider, cursor)
    assert items[file_id].deleted and items[file_id].name == "notes-final.txt"

    drive.untrash(file_id)
    items, cursor = await synced(provider, cursor)
    assert not items[file_id].deleted

    drive.delete(file_id)
    items, cursor = await synced(provider, cursor)
    assert items[file_id].deleted and items[file_id].name == ""  # removed: Drive names no file any more

    items, _ = await synced(provider, cursor)
    assert items == {}


async def test_a_google_doc_edit_changes_its_version_tag(drive: DriveStandin, provider: DriveProvider) -> None:
    doc = drive.create_google_doc("Plan", "# Plan")
    items, cursor = await synced(provider, None)
    drive.edit(doc, "# Plan\n\nNow with dates.")
    changed, _ = await synced(provider, cursor)
    assert changed[doc].version_tag != items[doc].version_tag


async def test_trashing_a_folder_deletes_everything_in_it(drive: DriveStandin, provider: DriveProvider) -> None:
    folder = drive.create_folder("Team")
    inner = drive.create_file("inside.txt", b"x", parent=drive.create_folder("Sub", parent=folder))
    _, cursor = await synced(provider, None)
    drive.trash(folder)
    items, _ = await synced(provider, cursor)
    assert items[inner].deleted and items[folder].deleted


async def test_changes_page_through_next_page_tokens_to_the_new_start_token(drive: DriveStandin) -> None:
    provider = provider_for(drive, page_size=2)
    try:
        _, cursor = await synced(provider, None)
        created = [drive.create_file(f"n{n}.txt", b"n") for n in range(5)]
        pages = await pages_of(provider, cursor)
        assert [page.final for page in pages] == [False, False, True]
        assert [item.item_id for page in pages for item in page.changes] == created
        # An intermediate cursor is a Drive page token: resuming from it yields the rest.
        resumed, final = await synced(provider, pages[0].cursor)
    finally:
        await provider.aclose()
    assert list(resumed) == created[2:] and final == pages[-1].cursor


async def test_a_refused_page_token_is_cursor_expired(drive: DriveStandin) -> None:
    drive.create_file("a.txt", b"a")
    drive.create_file("b.txt", b"b")
    provider = provider_for(drive, page_size=1)
    try:
        first = await anext(aiter(provider.changes(None)))
        _, cursor = await synced(provider, None)
        drive.invalidate_page_tokens()
        with pytest.raises(CursorExpired):
            await pages_of(provider, cursor)
        with pytest.raises(CursorExpired):
            await pages_of(provider, first.cursor)
        with pytest.raises(CursorExpired):
            await pages_of(provider, "{not json")
        _, fresh = await synced(provider, None)  # what the engine does next: enumerate everything again
    finally:
        await provider.aclose()
    assert fresh.isdigit()


async def test_a_shared_drive_connector_sees_only_that_drive(drive: DriveStandin) -> None:
    shared = drive.create_shared_drive("Legal")
    contract = drive.create_file("contract.pdf", b"%PDF-1.4 contract", mime_type="application/pdf", parent=shared)
    drive.create_file("mine.txt", b"my drive only")
    provider = provider_for(drive, drive_id=shared)
    try:
        items, cursor = await synced(provider, None)
        assert set(items) == {contract}
        assert items[contract].permissions == () and items[contract].path == "/contract.pdf"
        drive.create_file("other.txt", b"still my drive")
        drive.rename(contract, "contract-signed.pdf")
        changed, _ = await synced(provider, cursor)
    finally:
        await provider.aclose()
    assert set(changed) == {contract} and changed[contract].name == "contract-signed.pdf"
    assert all(r.params.get("driveId") == shared for r in drive.requests_to("/changes"))


# --- throttling ---------------------------------------------------------------------------------------
async def test_429_with_retry_after_waits_what_drive_said(drive: DriveStandin) -> None:
    drive.create_file("a.txt", b"a")
    sleeps = Sleeps()
    provider = provider_for(drive, sleeps=sleeps)
    drive.throttle(2, status=429, retry_after=7)
    try:
        items, _ = await synced(provider, None)
    finally:
        await provider.aclose()
    assert sleeps.waits == [7.0, 7.0] and len(items) == 1


async def test_429_without_retry_after_backs_off_with_jitter(drive: DriveStandin) -> None:
    sleeps = Sleeps()
    provider = provider_for(drive, sleeps=sleeps)
    drive.throttle(3, status=429)
    try:
        await synced(provider, None)
    finally:
        await provider.aclose()
    assert len(sleeps.waits) == 3
    assert all(0 <= wait <= min(FAST.max_delay_s, FAST.base_delay_s * 2**n) for n, wait in enumerate(sleeps.waits))


@pytest.mark.parametrize("reason", ["userRateLimitExceeded", "rateLimitExceeded"])
async def test_403_rate_limits_are_retried_with_backoff(drive: DriveStandin, reason: str) -> None:
    drive.create_file("a.txt", b"a")
    sleeps = Sleeps()
    provider = provider_for(drive, sleeps=sleeps)
    drive.throttle(2, status=403, reason=reason)
    try:
        items, _ = await synced(provider, None)
    finally:
        await provider.aclose()
    assert len(items) == 1 and len(sleeps.waits) == 2
    assert all(0 <= wait <= FAST.base_delay_s * 2**n for n, wait in enumerate(sleeps.waits))


async def test_throttled_past_every_attempt_is_a_transient_error(drive: DriveStandin) -> None:
    provider = provider_for(drive, policy=RetryPolicy(max_attempts=2, base_delay_s=0.001))
    drive.throttle(5, status=403)
    try:
        with pytest.raises(ProviderError) as refused:
            await synced(provider, None)
    finally:
        await provider.aclose()
    assert refused.value.transient and refused.value.status == 403


async def test_a_download_is_retried_after_throttling(drive: DriveStandin, tmp_path: Path) -> None:
    file_id = drive.create_file("a.txt", b"after the wait")
    sleeps = Sleeps()
    provider = provider_for(drive, sleeps=sleeps)
    try:
        items, _ = await synced(provider, None)
        drive.throttle(1, status=429, retry_after=3)
        drive.throttle(1, status=403, reason="userRateLimitExceeded")
        downloaded = await provider.download(items[file_id], tmp_path)
    finally:
        await provider.aclose()
    assert downloaded.path.read_bytes() == b"after the wait" and sleeps.waits[0] == 3.0 and len(sleeps.waits) == 2


# --- content ------------------------------------------------------------------------------------------
async def test_content_streams_to_a_file_and_is_hashed(drive: DriveStandin, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:
        for _ in range(12):
            handle.write(os.urandom(1024 * 1024))
    file_id = drive.create_file("big.bin", source, mime_type="application/pdf")
    target = tmp_path / "downloads"
    target.mkdir()
    provider = provider_for(drive)
    try:
        items, _ = await synced(provider, None)
        downloaded = await provider.download(items[file_id], target)
    finally:
        await provider.aclose()
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (downloaded.sha256, downloaded.size_bytes) == (expected, 12 * 1024 * 1024)
    assert downloaded.path.parent == target and downloaded.content_type == "application/pdf"
    (media,) = drive.requests_to(f"/files/{file_id}")[-1:]
    assert media.params["alt"] == "media"


async def test_a_google_doc_is_exported_as_markdown(drive: DriveStandin, tmp_path: Path) -> None:
    doc = drive.create_google_doc("Plan", "# Plan\n\nShip it.")
    sheet = drive.create_google_doc("Budget", "item,cost\nlaptop,900\n", kind="spreadsheet")
    provider = provider_for(drive)
    try:
        items, _ = await synced(provider, None)
        exported = await provider.download(items[doc], tmp_path)
        csv_export = await provider.download(items[sheet], tmp_path)
    finally:
        await provider.aclose()
    assert exported.path.read_text() == "# Plan\n\nShip it." and exported.content_type == "text/markdown"
    assert csv_export.path.read_text() == "item,cost\nlaptop,900\n" and csv_export.content_type == "text/csv"
    assert drive.requests_to(f"/files/{doc}/export")[0].params["mimeType"] == "text/markdown"


async def test_an_export_past_ten_megabytes_is_a_permanent_error(drive: DriveStandin, tmp_path: Path) -> None:
    doc = drive.create_google_doc("Huge", "word " * (2 * 1024 * 1024 + 1))
    provider = provider_for(drive)
    try:
        items, _ = await synced(provider, None)
        with pytest.raises(ProviderError) as refused:
            await provider.download(items[doc], tmp_path)
    finally:
        await provider.aclose()
    assert refused.value.status == 403 and not refused.value.transient
    assert "exportSizeLimitExceeded" in str(refused.value)


# --- OAuth --------------------------------------------------------------------------------------------
async def test_the_refresh_token_grant_signs_in_and_an_expired_token_is_refreshed(
    drive: DriveStandin, provider: DriveProvider
) -> None:
    await synced(provider, None)
    drive.expire_access_tokens()
    await synced(provider, None)
    grants = drive.requests_to("/token", method="POST")
    assert len(grants) == 2
    form = dict(pair.split("=", 1) for pair in grants[0].body.decode().split("&"))
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == REFRESH_TOKEN
    assert form["client_id"] == "cid.apps.googleusercontent.com"


async def test_a_revoked_refresh_token_is_a_permanent_error(drive: DriveStandin) -> None:
    provider = provider_for(drive, refresh_token="revoked")
    try:
        with pytest.raises(ProviderError) as refused:
            await synced(provider, None)
    finally:
        await provider.aclose()
    assert refused.value.status == 400 and not refused.value.transient and "invalid_grant" in str(refused.value)


async def test_build_wires_the_connector_secrets(drive: DriveStandin) -> None:
    file_id = drive.create_file("a.txt", b"a")
    provider = build(context_for(), endpoints_for(drive), policy=FAST)
    try:
        items = [item.item_id async for page in provider.changes(None) for item in page.changes]
    finally:
        await provider.aclose()
    assert items == [file_id]


# --- push channels ------------------------------------------------------------------------------------
async def test_subscribe_watches_changes_and_drive_posts_sync_then_change(
    drive: DriveStandin, receiver: Receiver
) -> None:
    receiver.messages.clear()
    provider = provider_for(drive, webhook_url=receiver.url)
    try:
        subscription = await provider.subscribe(None)
        await drive.delivered(1)
        drive.create_file("new.txt", b"new")
        deliveries = await drive.delivered(2)
        sync_plan = await provider.plan(b"", receiver.messages[0])
        change_plan = await provider.plan(b"", receiver.messages[1])
    finally:
        await provider.aclose()
    assert subscription is not None and subscription.resource
    assert subscription.expires_at is not None
    assert timedelta(days=6, hours=23) < subscription.expires_at - datetime.now(UTC) <= timedelta(days=7)
    (watch,) = drive.requests_to("/changes/watch", method="POST")
    body = json.loads(watch.body)
    assert (body["type"], body["address"], body["token"]) == ("web_hook", receiver.url, CHANNEL_TOKEN)
    assert watch.params["pageToken"].isdigit() and body["id"] == subscription.subscription_id
    sync, change = receiver.messages[:2]
    assert [m["x-goog-resource-state"] for m in (sync, change)] == ["sync", "change"]
    assert [m["x-goog-message-number"] for m in (sync, change)] == ["1", "2"]
    assert all(m["x-goog-channel-token"] == CHANNEL_TOKEN for m in (sync, change))
    assert all(m["x-goog-channel-id"] == subscription.subscription_id for m in (sync, change))
    assert all(m["x-goog-resource-id"] == subscription.resource and m["body"] == "" for m in (sync, change))
    assert [d.status for d in deliveries] == [200, 200]
    assert (sync_plan.sync, sync_plan.items, change_plan.sync) == (False, [], True)


async def test_renewing_opens_a_new_channel_before_stopping_the_old(drive: DriveStandin, receiver: Receiver) -> None:
    provider = provider_for(drive, webhook_url=receiver.url)
    try:
        old = await provider.subscribe(None)
        assert old is not None
        new = await provider.subscribe(old)
        assert new is not None and new.subscription_id != old.subscription_id
        await drive.delivered(2)  # both channels' sync messages
        receiver.messages.clear()
        drive.create_file("after.txt", b"after the renewal")
        await drive.delivered(3)
    finally:
        await provider.aclose()
    requests = [(r.method, r.path) for r in drive.requests if r.method == "POST" and r.path != "/token"]
    assert requests == [
        ("POST", "/drive/v3/changes/watch"),
        ("POST", "/drive/v3/changes/watch"),
        ("POST", "/drive/v3/channels/stop"),
    ]
    (stop,) = drive.requests_to("/channels/stop", method="POST")
    assert json.loads(stop.body) == {"id": old.subscription_id, "resourceId": old.resource}
    assert [m["x-goog-channel-id"] for m in receiver.messages] == [new.subscription_id]


async def test_unsubscribe_stops_the_channel_and_tolerates_one_already_gone(
    drive: DriveStandin, receiver: Receiver
) -> None:
    provider = provider_for(drive, webhook_url=receiver.url)
    try:
        subscription = await provider.subscribe(None)
        assert subscription is not None
        await drive.delivered(1)
        await provider.unsubscribe(subscription)
        await provider.unsubscribe(subscription)  # 404 the second time: already stopped
        drive.create_file("unwatched.txt", b"x")
        await asyncio.sleep(0.2)
    finally:
        await provider.aclose()
    assert len(drive.deliveries) == 1 and all(channel.stopped for channel in drive.channels())


async def test_drive_retries_a_message_the_receiver_could_not_take(drive: DriveStandin, receiver: Receiver) -> None:
    receiver.messages.clear()
    receiver.statuses[:] = [503, 500]
    provider = provider_for(drive, webhook_url=receiver.url)
    try:
        await provider.subscribe(None)
        (delivery,) = await drive.delivered(1)
    finally:
        await provider.aclose()
    assert (delivery.status, delivery.attempts) == (200, 3)
    assert [m["x-goog-message-number"] for m in receiver.messages] == ["1", "1", "1"]


async def test_the_stand_in_can_lose_and_repeat_messages(drive: DriveStandin, receiver: Receiver) -> None:
    """What the end-to-end tests use: a dropped notification (repaired by the poll) and a duplicate delivery."""
    receiver.messages.clear()
    provider = provider_for(drive, webhook_url=receiver.url)
    try:
        await provider.subscribe(None)
        (sync,) = await drive.delivered(1)
        drive.drop_notifications(1)
        drive.create_file("lost.txt", b"nobody hears of this")
        lost = (await drive.delivered(2))[1]
        drive.resend(sync)
        await drive.delivered(3)
    finally:
        await provider.aclose()
    assert lost.dropped and lost.status is None and lost.message_number == 2
    assert [m["x-goog-message-number"] for m in receiver.messages] == ["1", "1"]


async def test_the_stand_in_answers_only_the_fields_asked_for(drive: DriveStandin) -> None:
    """Partial responses as Drive gives them: a provider that forgets `fields` gets id/name/mimeType only, and a
    misspelt field is refused (so the provider's own field lists are checked by every test above)."""
    drive.create_file("a.txt", b"a")
    bearer = {"Authorization": f"Bearer {await access_token(drive)}"}
    async with httpx.AsyncClient(base_url=drive.api_url, headers=bearer) as client:
        plain = (await client.get("/files")).json()
        refused = await client.get("/files", params={"fields": "files(id,nme)"})
    assert set(plain["files"][0]) == {"kind", "id", "name", "mimeType"}
    assert refused.status_code == 400 and refused.json()["error"]["errors"][0]["reason"] == "invalidParameter"


async def access_token(drive: DriveStandin) -> str:
    async with httpx.AsyncClient() as client:
        form = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        answer = await client.post(drive.token_url, data=form | {"refresh_token": REFRESH_TOKEN})
    return str(answer.json()["access_token"])
