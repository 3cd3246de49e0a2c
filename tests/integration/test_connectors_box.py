"""The Box provider against the Box stand-in (tests/standins/box_server.py): enumeration with paging and resume,
incremental changes from the event stream, webhook plans, cursor expiry, throttling, streamed downloads, the
webhook subscription, and the stand-in's own delivery protocol (signatures, rotation, retries, replays)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ragstream_connectors.providers.base import (
    ChangePage,
    ConnectorContext,
    CursorExpired,
    ItemChange,
    Provider,
    ProviderError,
    Subscription,
)
from ragstream_connectors.providers.box import BoxProvider, build, client_credentials
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.http import ProviderHttp, RetryPolicy
from standins.box_model import Content
from standins.box_server import BoxStandin
from standins.server import StandinServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

pytestmark = pytest.mark.integration
WEBHOOK_URL = "https://rag.example.com/v1/webhooks/con_0123456789abcdef"
POLICY = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.04)


@dataclass
class Receiver:
    """Our end of the webhook: records what arrives, answers with scripted statuses (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def hook(self, request: Request) -> Response:
        self.received.append((dict(request.headers), await request.body()))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def box() -> Iterator[BoxStandin]:
    with BoxStandin(first_retry_s=0.01) as standin:
        yield standin


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    with StandinServer(Starlette(routes=[Route("/hook", target.hook, methods=["POST"])]), name="box-receiver") as srv:
        target.url = f"{srv.base_url}/hook"
        yield target


def context_for(box: BoxStandin, folder_id: str, **config: object) -> ConnectorContext:
    settings = {"client_id": box.client_id, "subject_type": "enterprise", "subject_id": box.enterprise_id}
    return ConnectorContext(
        tenant_id="t1",
        connector_id="con_0123456789abcdef",
        provider="box",
        config={**settings, "folder_id": folder_id, **config},
        secrets={"client_secret": box.client_secret},
        webhook_url=WEBHOOK_URL,
    )


def provider_for(
    box: BoxStandin, folder_id: str, *, sleeps: list[float] | None = None, page_size: int = 1000, **config: object
) -> BoxProvider:
    context = context_for(box, folder_id, **config)
    endpoints = ProviderEndpoints(box_api_url=box.api_url, box_token_url=box.token_url)
    recorded = sleeps if sleeps is not None else []

    async def sleep(seconds: float) -> None:
        recorded.append(seconds)

    http = ProviderHttp("box", client_credentials(context, endpoints), policy=POLICY, sleep=sleep)
    return BoxProvider(context, endpoints, http, page_size=page_size)


async def pages_of(provider: Provider, cursor: str | None) -> list[ChangePage]:
    return [page async for page in provider.changes(cursor)]


async def sync(provider: Provider, cursor: str | None) -> tuple[list[ItemChange], str]:
    """Every change since `cursor`, and the final cursor to save."""
    pages = await pages_of(provider, cursor)
    assert pages[-1].final and not any(page.final for page in pages[:-1])
    return [change for page in pages for change in page.changes], pages[-1].cursor


def by_id(changes: list[ItemChange]) -> dict[str, ItemChange]:
    return {change.item_id: change for change in changes}  # the last state of a repeated item wins


# --- enumeration ---------------------------------------------------------------------------------


async def test_full_enumeration_pages_through_the_folder_tree(box: BoxStandin) -> None:
    folder = box.create_folder("Contracts")
    sub = box.create_folder("2024", folder)
    top = [box.upload(f"top-{n}.txt", f"top {n}".encode(), folder) for n in range(5)]
    nested = [box.upload(f"nested-{n}.md", f"nested {n}".encode(), sub) for n in range(3)]
    outside = box.upload("elsewhere.txt", b"not synced")
    provider = provider_for(box, folder, page_size=2)

    pages = await pages_of(provider, None)
    changes = [change for page in pages for change in page.changes]

    assert sorted(change.item_id for change in changes) == sorted(top + nested)
    assert outside not in {change.item_id for change in changes}
    assert pages[-1].final and not pages[-1].changes and not any(page.final for page in pages[:-1])
    nested_file = by_id(changes)[nested[0]]
    assert nested_file.path == "/Contracts/2024/nested-0.md" and nested_file.name == "nested-0.md"
    assert nested_file.content_type == "text/markdown" and nested_file.size_bytes == len(b"nested 0")
    assert nested_file.author == box.user.login and nested_file.permissions == (f"user:{box.user.login}",)
    assert nested_file.version_tag and nested_file.source_uri == f"{box.api_url}/files/{nested[0]}"
    listings = [r for r in box.requests if r.path.endswith("/items")]
    assert all(r.query["usemarker"] == "true" and r.query["limit"] == "2" for r in listings)
    assert any("marker" in r.query for r in listings)  # marker paging was followed
    await provider.aclose()


async def test_enumeration_resumes_from_any_page_cursor_without_loss_or_repeats(box: BoxStandin) -> None:
    folder = box.create_folder("Contracts")
    sub = box.create_folder("Sub", folder)
    files = [box.upload(f"f{n}.txt", b"x", folder if n % 2 else sub) for n in range(9)]
    provider = provider_for(box, folder, page_size=2)
    first_two = []
    async for page in provider.changes(None):
        first_two.append(page)
        if len(first_two) == 2:
            break  # the worker dies here; its saved cursor is the second page's

    resumed = provider_for(box, folder, page_size=2)
    rest, _ = await sync(resumed, first_two[-1].cursor)

    seen = [change.item_id for page in first_two for change in page.changes] + [c.item_id for c in rest]
    assert sorted(seen) == sorted(files)
    await provider.aclose()
    await resumed.aclose()


async def test_changes_made_during_the_walk_come_with_the_next_sync(box: BoxStandin) -> None:
    folder = box.create_folder("Contracts")
    for n in range(4):
        box.upload(f"f{n}.txt", b"x", folder)
    provider = provider_for(box, folder, page_size=2)
    pages = provider.changes(None)
    first = await anext(pages)
    late = box.upload("late.txt", b"uploaded mid-walk", folder)
    rest = [page async for page in pages]
    assert first.changes

    changes, _ = await sync(provider, rest[-1].cursor)  # the stream position was taken before the walk

    assert by_id(changes)[late].name == "late.txt" and not by_id(changes)[late].deleted
    await provider.aclose()


# --- incremental changes -------------------------------------------------------------------------


async def test_create_edit_rename_trash_restore_and_purge_from_the_event_stream(box: BoxStandin) -> None:
    folder = box.create_folder("Contracts")
    provider = provider_for(box, folder)
    _, cursor = await sync(provider, None)

    file_id = box.upload("draft.txt", b"version one", folder)
    changes, cursor = await sync(provider, cursor)
    created = by_id(changes)[file_id]
    assert not created.deleted and created.name == "draft.txt"

    box.edit(file_id, b"version two")
    changes, cursor = await sync(provider, cursor)
    edited = by_id(changes)[file_id]
    assert edited.version_tag != created.version_tag and edited.size_bytes == len(b"version two")

    box.rename(file_id, "final.txt")
    changes, cursor = await sync(provider, cursor)
    renamed = by_id(changes)[file_id]
    assert (renamed.name, renamed.path, renamed.version_tag) == (
        "final.txt",
        "/Contracts/final.txt",
        edited.version_tag,
    )

    box.trash(file_id)
    changes, cursor = await sync(provider, cursor)
    assert by_id(changes)[file_id].deleted

    box.restore(file_id)
    changes, cursor = await sync(provider, cursor)
    restored = by_id(changes)[file_id]
    assert not restored.deleted and restored.version_tag == edited.version_tag

    box.delete(file_id)
    changes, cursor = await sync(provider, cursor)
    assert by_id(changes)[file_id].deleted

    changes, _ = await sync(provider, cursor)
    assert changes == []
    await provider.aclose()


async def test_a_file_moved_out_of_the_synced_folder_is_deleted_and_back_in_returns(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    other = box.create_folder("Elsewhere")
    file_id = box.upload("a.txt", b"a", folder)
    provider = provider_for(box, folder)
    _, cursor = await sync(provider, None)

    box.move(file_id, other)
    changes, cursor = await sync(provider, cursor)
    assert by_id(changes)[file_id].deleted

    box.move(file_id, folder)
    changes, _ = await sync(provider, cursor)
    assert not by_id(changes)[file_id].deleted and by_id(changes)[file_id].path == "/Synced/a.txt"
    await provider.aclose()


async def test_folder_changes_relist_their_files_and_a_trashed_folder_asks_for_a_full_sync(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    sub = box.create_folder("Old name", folder)
    inner = box.upload("inner.txt", b"inner", sub)
    provider = provider_for(box, folder)
    _, cursor = await sync(provider, None)

    box.rename(sub, "New name")
    changes, cursor = await sync(provider, cursor)
    assert by_id(changes)[inner].path == "/Synced/New name/inner.txt"

    box.trash(sub)
    with pytest.raises(CursorExpired):
        await sync(provider, cursor)
    changes, _ = await sync(provider, None)  # what the engine does next: enumerate, then sweep the unseen
    assert inner not in by_id(changes)
    await provider.aclose()


async def test_folders_outside_the_tree_are_ignored_and_one_moved_out_takes_its_files(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    sub = box.create_folder("Sub", folder)
    inner = box.upload("inner.txt", b"inner", sub)
    unrelated = box.create_folder("Unrelated")
    box.upload("other.txt", b"other", unrelated)
    provider = provider_for(box, folder)
    _, cursor = await sync(provider, None)

    box.trash(unrelated)  # not ours: no full sync for it
    changes, cursor = await sync(provider, cursor)
    assert inner not in by_id(changes)

    box.move(sub, "0")
    changes, _ = await sync(provider, cursor)
    assert by_id(changes)[inner].deleted
    await provider.aclose()


async def test_a_lost_notification_is_repaired_by_the_event_stream(box: BoxStandin, receiver: Receiver) -> None:
    folder = box.create_folder("Synced")
    box.add_webhook(folder, receiver.url)
    provider = provider_for(box, folder)
    _, cursor = await sync(provider, None)

    box.drop_deliveries(1)
    file_id = box.upload("missed.txt", b"never notified", folder)
    assert await box.settled() == [] and receiver.received == []

    changes, _ = await sync(provider, cursor)
    assert not by_id(changes)[file_id].deleted
    await provider.aclose()


async def test_an_old_or_unreadable_cursor_is_expired(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    provider = provider_for(box, folder)
    _, cursor = await sync(provider, None)
    endpoints = ProviderEndpoints(box_api_url=box.api_url, box_token_url=box.token_url)
    context = context_for(box, folder)
    later = BoxProvider(
        context,
        endpoints,
        ProviderHttp("box", client_credentials(context, endpoints), policy=POLICY),
        now=lambda: datetime.now(UTC) + timedelta(days=15),  # past Box's two-week floor of event retention
    )

    with pytest.raises(CursorExpired):
        await pages_of(later, cursor)
    with pytest.raises(CursorExpired):
        await pages_of(provider, "delta-link-from-another-provider")
    await provider.aclose()
    await later.aclose()


# --- notifications -------------------------------------------------------------------------------


async def test_webhook_plans_follow_the_files_current_state(box: BoxStandin, receiver: Receiver) -> None:
    folder = box.create_folder("Synced")
    box.add_webhook(folder, receiver.url)
    provider = provider_for(box, folder)
    file_id = box.upload("a.txt", b"a", folder)
    box.trash(file_id)
    box.restore(file_id)
    box.rename(folder, "Renamed")
    await box.settled()
    bodies = {json.loads(body)["trigger"]: body for _, body in receiver.received}
    assert {"FILE.UPLOADED", "FILE.TRASHED", "FILE.RESTORED", "FOLDER.RENAMED"} <= set(bodies)

    uploaded = await provider.plan(bodies["FILE.UPLOADED"], {})
    late_trash = await provider.plan(bodies["FILE.TRASHED"], {})  # delivered after the restore: still there
    folder_plan = await provider.plan(bodies["FOLDER.RENAMED"], {})
    box.trash(file_id)
    trashed = await provider.plan(bodies["FILE.TRASHED"], {})

    assert [item.item_id for item in uploaded.items] == [file_id] and not uploaded.items[0].deleted
    assert not late_trash.items[0].deleted and late_trash.items[0].path == "/Renamed/a.txt"
    assert folder_plan.sync and not folder_plan.items
    assert trashed.items[0].deleted
    await provider.aclose()


async def test_plans_for_other_triggers_and_malformed_bodies(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    managed = provider_for(box, folder, manage_webhook=True)
    unmanaged = provider_for(box, folder)
    deleted = json.dumps({"type": "webhook_event", "trigger": "WEBHOOK.DELETED", "source": {}}).encode()
    previewed = json.dumps({"type": "webhook_event", "trigger": "FILE.PREVIEWED", "source": {"id": "1"}}).encode()

    assert (await managed.plan(deleted, {})).resubscribe
    assert (await unmanaged.plan(deleted, {})).sync
    assert not (await managed.plan(previewed, {})).items
    for body in (b"not json", b'{"type": "event"}'):
        with pytest.raises(ProviderError) as refused:
            await managed.plan(body, {})
        assert not refused.value.transient
    await managed.aclose()
    await unmanaged.aclose()


# --- throttling and tokens -----------------------------------------------------------------------


async def test_throttling_waits_what_retry_after_says(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    file_id = box.upload("a.txt", b"a", folder)
    sleeps: list[float] = []
    provider = provider_for(box, folder, sleeps=sleeps)
    await sync(provider, None)  # token fetched, nothing throttled yet
    box.throttle(2, retry_after=3)

    changes, _ = await sync(provider, None)

    assert sleeps == [3.0, 3.0] and by_id(changes)[file_id]
    await provider.aclose()


async def test_throttling_without_retry_after_backs_off_with_jitter_then_gives_up(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    sleeps: list[float] = []
    provider = provider_for(box, folder, sleeps=sleeps)
    await sync(provider, None)
    box.throttle(2)
    await sync(provider, None)
    assert len(sleeps) == 2 and all(0 <= s <= POLICY.base_delay_s * 2**n for n, s in enumerate(sleeps))

    box.throttle(POLICY.max_attempts)
    with pytest.raises(ProviderError) as exhausted:
        await sync(provider, None)
    assert exhausted.value.transient and exhausted.value.status == 429
    await provider.aclose()


async def test_a_revoked_token_is_replaced_once(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    provider = build(context_for(box, folder), ProviderEndpoints(box_api_url=box.api_url, box_token_url=box.token_url))
    await sync(provider, None)
    box.expire_tokens()
    await sync(provider, None)
    assert box.token_requests == 2
    await provider.aclose()


def test_build_refuses_an_incomplete_connector(box: BoxStandin) -> None:
    endpoints = ProviderEndpoints(box_api_url=box.api_url, box_token_url=box.token_url)
    for config in ({"subject_type": "group"}, {"client_id": ""}, {"subject_id": ""}):
        with pytest.raises(ProviderError) as refused:
            build(context_for(box, "0", **config), endpoints)
        assert not refused.value.transient


# --- content -------------------------------------------------------------------------------------


async def test_a_multi_megabyte_file_streams_through_the_download_redirect(box: BoxStandin, tmp_path: Path) -> None:
    folder = box.create_folder("Synced")
    content = Content.synthetic(12 * 1024 * 1024 + 17)
    expected = hashlib.sha256(b"".join(content.pieces())).hexdigest()
    file_id = box.upload("big.bin", content, folder)
    provider = provider_for(box, folder)
    changes, _ = await sync(provider, None)

    downloaded = await provider.download(by_id(changes)[file_id], tmp_path)

    assert (downloaded.size_bytes, downloaded.sha256) == (content.size, expected)
    assert hashlib.sha256(downloaded.path.read_bytes()).hexdigest() == expected
    (redirected,) = [r for r in box.requests if r.path.startswith("/d/1/")]
    assert redirected.host == box.download_host and "authorization" not in redirected.headers
    (asked,) = [r for r in box.requests if r.path.endswith("/content")]
    assert asked.query["version"] == by_id(changes)[file_id].version_tag and "authorization" in asked.headers
    await provider.aclose()


async def test_download_fetches_the_version_the_change_named(box: BoxStandin, tmp_path: Path) -> None:
    folder = box.create_folder("Synced")
    file_id = box.upload("a.txt", b"first", folder)
    sleeps: list[float] = []
    provider = provider_for(box, folder, sleeps=sleeps)
    changes, _ = await sync(provider, None)
    box.edit(file_id, b"second, longer")
    box.throttle(1, retry_after=1)

    downloaded = await provider.download(by_id(changes)[file_id], tmp_path)

    assert downloaded.path.read_bytes() == b"first" and sleeps == [1.0]
    await provider.aclose()


async def test_a_file_not_ready_for_download_is_never_stored_empty(box: BoxStandin, tmp_path: Path) -> None:
    folder = box.create_folder("Synced")
    file_id = box.upload("fresh.txt", b"just uploaded", folder)
    provider = provider_for(box, folder)
    changes, _ = await sync(provider, None)
    box.content_not_ready(1, retry_after=1)  # 202 + Retry-After, as for a file Box is still processing

    try:
        first = await provider.download(by_id(changes)[file_id], tmp_path)
        assert first.path.read_bytes() == b"just uploaded"
    except ProviderError as refused:
        assert refused.transient and await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []
    again = await provider.download(by_id(changes)[file_id], tmp_path)

    assert again.path.read_bytes() == b"just uploaded"
    await provider.aclose()


# --- the webhook subscription --------------------------------------------------------------------


async def test_subscribe_creates_keeps_recreates_and_deletes_the_folder_webhook(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    provider = provider_for(box, folder, manage_webhook=True)

    created = await provider.subscribe(None)
    assert created is not None and created.expires_at is None
    hook = box.webhooks[created.subscription_id]
    assert (hook.target_type, hook.target_id, hook.address) == ("folder", folder, WEBHOOK_URL)
    assert {"FILE.UPLOADED", "FILE.TRASHED", "FILE.DELETED", "FILE.RESTORED", "FILE.RENAMED"} <= set(hook.triggers)

    assert await provider.subscribe(created) == created and len(box.webhooks) == 1
    hook.address = "https://moved.example.com/hook"  # edited in the console: renewing puts ours back
    assert await provider.subscribe(created) == created and hook.address == WEBHOOK_URL
    del box.webhooks[created.subscription_id]  # removed in the developer console
    recreated = await provider.subscribe(created)
    assert recreated is not None and recreated.subscription_id in box.webhooks

    await provider.unsubscribe(recreated)
    assert box.webhooks == {}
    await provider.unsubscribe(recreated)  # already gone: nothing to do
    await provider.aclose()


async def test_subscribe_adopts_a_webhook_already_on_the_folder(box: BoxStandin) -> None:
    folder = box.create_folder("Synced")
    existing = box.add_webhook(folder, "https://old.example.com/hook", ["FILE.UPLOADED"])
    provider = provider_for(box, folder, manage_webhook=True)

    adopted = await provider.subscribe(None)

    assert adopted == Subscription(existing, None, resource=f"folder:{folder}")
    assert box.webhooks[existing].address == WEBHOOK_URL and "FILE.TRASHED" in box.webhooks[existing].triggers
    await provider.aclose()


async def test_no_webhook_unless_managed_and_never_on_the_root_folder(box: BoxStandin) -> None:
    unmanaged = provider_for(box, box.create_folder("Synced"))
    on_root = provider_for(box, "0", manage_webhook=True)
    assert await unmanaged.subscribe(None) is None
    with pytest.raises(ProviderError) as refused:
        await on_root.subscribe(None)
    assert not refused.value.transient and box.webhooks == {}
    await unmanaged.aclose()
    await on_root.aclose()


# --- the stand-in's deliveries, as Box documents them ----------------------------------------------


def signed_by(key: str, headers: dict[str, str], body: bytes, header: str) -> bool:
    """https://developer.box.com/guides/webhooks/v2/signatures-v2/, written out independently."""
    digest = hmac.new(key.encode(), body + headers["box-delivery-timestamp"].encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), headers.get(header, ""))


async def test_deliveries_are_signed_with_both_keys_and_keys_rotate(box: BoxStandin, receiver: Receiver) -> None:
    folder = box.create_folder("Synced")
    box.add_webhook(folder, receiver.url)
    box.upload("a.txt", b"a", folder)
    await box.settled()
    box.set_signature_keys("new-primary", None)
    box.upload("b.txt", b"b", folder)
    await box.settled()

    (first_headers, first_body), (rotated_headers, rotated_body) = receiver.received
    assert signed_by("box-primary-key", first_headers, first_body, "box-signature-primary")
    assert signed_by("box-secondary-key", first_headers, first_body, "box-signature-secondary")
    assert first_headers["box-signature-version"] == "1" and first_headers["box-signature-algorithm"] == "HmacSHA256"
    stamp = datetime.fromisoformat(first_headers["box-delivery-timestamp"])
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)
    assert signed_by("new-primary", rotated_headers, rotated_body, "box-signature-primary")
    assert "box-signature-secondary" not in rotated_headers


async def test_failed_deliveries_are_retried_with_new_delivery_ids(box: BoxStandin, receiver: Receiver) -> None:
    folder = box.create_folder("Synced")
    box.add_webhook(folder, receiver.url)
    receiver.statuses = [500, 503]
    box.upload("a.txt", b"a", folder)

    attempts = await box.settled()

    assert [attempt.status for attempt in attempts] == [500, 503, 200]
    assert len({attempt.delivery_id for attempt in attempts}) == 3
    assert len({json.loads(attempt.body)["id"] for attempt in attempts}) == 1  # the body's event id stays


async def test_forged_stale_and_replayed_deliveries(box: BoxStandin, receiver: Receiver) -> None:
    folder = box.create_folder("Synced")
    file_id = box.upload("a.txt", b"a", folder)
    receiver.statuses = [401, 401]

    (forged,) = await asyncio.wrap_future(box.deliver("FILE.UPLOADED", file_id, receiver.url, forged=True))
    (stale,) = await asyncio.wrap_future(
        box.deliver("FILE.UPLOADED", file_id, receiver.url, stale_by=timedelta(minutes=11))
    )
    (honest,) = await asyncio.wrap_future(box.deliver("FILE.UPLOADED", file_id, receiver.url))
    replayed = await asyncio.wrap_future(box.replay(honest))
    (retried,) = await asyncio.wrap_future(box.redeliver(honest))

    forged_headers, forged_body = receiver.received[0]
    assert not signed_by("box-primary-key", forged_headers, forged_body, "box-signature-primary")
    stale_headers, stale_body = receiver.received[1]
    assert signed_by("box-primary-key", stale_headers, stale_body, "box-signature-primary")
    age = datetime.now(UTC) - datetime.fromisoformat(stale_headers["box-delivery-timestamp"])
    assert age > timedelta(minutes=10)
    assert (forged.status, stale.status, honest.status) == (401, 401, 200)
    assert replayed.delivery_id == honest.delivery_id and receiver.received[3] == receiver.received[2]
    assert retried.delivery_id != honest.delivery_id and retried.body == honest.body
