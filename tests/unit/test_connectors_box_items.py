"""Box's file JSON as ItemChange, the scope rule, the sync cursor, and the plans that need no API call."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from ragstream_connectors.providers.base import ConnectorContext, CursorExpired, ProviderError
from ragstream_connectors.providers.box import BoxProvider
from ragstream_connectors.providers.box_items import (
    EventsCursor,
    WalkCursor,
    decode_cursor,
    encode_cursor,
    in_scope,
    item_from_file,
)
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.http import ProviderHttp

pytestmark = pytest.mark.unit
API = "https://api.box.com/2.0"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
RETENTION = timedelta(days=14)

# The `source` of the webhook payload example in https://developer.box.com/guides/webhooks/handle/payload/.
DOCS_FILE: dict[str, Any] = {
    "id": "73835521473",
    "type": "file",
    "file_version": {"type": "file_version", "id": "78096737033", "sha1": "2c61623e86bee78e6ab444af456bccc7a1164095"},
    "sequence_id": "0",
    "etag": "0",
    "sha1": "2c61623e86bee78e6ab444af456bccc7a1164095",
    "name": "Test-Image-3.png",
    "size": 26458,
    "path_collection": {
        "total_count": 4,
        "entries": [
            {"type": "folder", "id": "0", "sequence_id": None, "etag": None, "name": "All Files"},
            {"type": "folder", "id": "2614853901", "sequence_id": "4", "etag": "4", "name": "Testing"},
            {"type": "folder", "id": "8290186265", "sequence_id": "0", "etag": "0", "name": "Webhooks Base"},
            {"type": "folder", "id": "8290188973", "sequence_id": "0", "etag": "0", "name": "Webhooks"},
        ],
    },
    "modified_at": "2016-07-11T10:10:32-07:00",
    "modified_by": {"type": "user", "id": "226067247", "name": "John Q. Developer", "login": "johnq@dev.name"},
    "owned_by": {"type": "user", "id": "226067247", "name": "John Q. Developer", "login": "johnq@dev.name"},
    "shared_link": None,
    "item_status": "active",
}


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(DOCS_FILE), **changes}


def test_the_documented_file_maps_to_an_upsert() -> None:
    item = item_from_file(DOCS_FILE, api_url=API, folder_id="2614853901")

    assert not item.deleted and item.is_file
    assert (item.item_id, item.name) == ("73835521473", "Test-Image-3.png")
    assert item.path == "/Testing/Webhooks Base/Webhooks/Test-Image-3.png"
    assert item.modified_at == datetime(2016, 7, 11, 10, 10, 32, tzinfo=timezone(timedelta(hours=-7)))
    assert (item.author, item.permissions) == ("johnq@dev.name", ("user:johnq@dev.name",))
    assert (item.version_tag, item.extra) == ("78096737033", {"file_version": "78096737033"})
    assert (item.content_type, item.size_bytes) == ("image/png", 26458)
    assert item.web_url == "https://app.box.com/file/73835521473"
    assert item.source_uri == f"{API}/files/73835521473"


def test_a_shared_link_gives_the_web_url_and_its_audience() -> None:
    link = {"url": "https://app.box.com/s/abc", "access": "open", "effective_access": "company"}
    item = item_from_file(with_changes(shared_link=link), api_url=API, folder_id="0")
    assert item.web_url == "https://app.box.com/s/abc"
    assert item.permissions == ("user:johnq@dev.name", "shared_link:company")


def test_without_a_file_version_the_sha1_is_the_version_tag() -> None:
    item = item_from_file(with_changes(file_version=None), api_url=API, folder_id="0")
    assert item.version_tag == DOCS_FILE["sha1"] and item.extra == {}


@pytest.mark.parametrize("status", ["trashed", "deleted"])
def test_a_file_that_is_not_active_is_deleted(status: str) -> None:
    item = item_from_file(with_changes(item_status=status), api_url=API, folder_id="0")
    assert item.deleted and item.item_id == "73835521473" and item.name == ""


def test_a_file_outside_the_synced_folder_is_deleted() -> None:
    assert item_from_file(DOCS_FILE, api_url=API, folder_id="999").deleted
    assert not item_from_file(DOCS_FILE, api_url=API, folder_id="8290188973").deleted


def test_scope_covers_the_folder_itself_and_everything_under_the_root() -> None:
    folder = {"type": "folder", "id": "42", "path_collection": {"entries": [{"id": "0"}]}}
    assert in_scope(folder, "42") and in_scope(folder, "0") and not in_scope(folder, "7")
    assert not in_scope({"type": "file", "id": "42", "path_collection": {"entries": []}}, "42")


def test_cursors_round_trip() -> None:
    events = EventsCursor("1152922976252290886", NOW)
    walk = WalkCursor(events, ("11", "12"), "marker-1")
    assert decode_cursor(encode_cursor(events), now=NOW, retention=RETENTION) == events
    assert decode_cursor(encode_cursor(walk), now=NOW, retention=RETENTION) == walk
    finished_folder = WalkCursor(events, ("12",))
    assert decode_cursor(encode_cursor(finished_folder), now=NOW, retention=RETENTION) == finished_folder


def test_a_cursor_past_the_event_retention_is_expired() -> None:
    old = encode_cursor(WalkCursor(EventsCursor("5", NOW - RETENTION - timedelta(seconds=1)), ("11",)))
    with pytest.raises(CursorExpired):
        decode_cursor(old, now=NOW, retention=RETENTION)
    fresh = encode_cursor(EventsCursor("5", NOW - RETENTION + timedelta(seconds=1)))
    assert decode_cursor(fresh, now=NOW, retention=RETENTION) == EventsCursor(
        "5", NOW - RETENTION + timedelta(seconds=1)
    )


@pytest.mark.parametrize(
    "text", ["", "https://graph.microsoft.com/delta?token=x", "[]", '{"stream_position": "5"}', '{"taken_at": "x"}']
)
def test_an_unreadable_cursor_is_expired(text: str) -> None:
    with pytest.raises(CursorExpired):
        decode_cursor(text, now=NOW, retention=RETENTION)


def offline_provider(**config: Any) -> BoxProvider:
    """A provider whose every HTTP request fails the test: these plans must not call Box."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected call {request.url}")

    context = ConnectorContext("t1", "con_0123456789abcdef", "box", {"folder_id": "42", **config}, {}, "https://x/")
    http = ProviderHttp("box", None, transport=httpx.MockTransport(refuse))
    return BoxProvider(context, ProviderEndpoints(), http)


def event(trigger: str, source: dict[str, Any] | None = None) -> bytes:
    return json.dumps({"type": "webhook_event", "id": "e1", "trigger": trigger, "source": source or {}}).encode()


@pytest.mark.parametrize("trigger", ["FOLDER.CREATED", "FOLDER.RENAMED", "FOLDER.MOVED", "FOLDER.TRASHED"])
async def test_folder_triggers_ask_for_a_sync(trigger: str) -> None:
    plan = await offline_provider().plan(event(trigger, {"type": "folder", "id": "43"}), {})
    assert plan.sync and not plan.items and not plan.resubscribe


async def test_a_deleted_webhook_is_recreated_only_when_the_connector_manages_it() -> None:
    assert (await offline_provider(manage_webhook=True).plan(event("WEBHOOK.DELETED"), {})).resubscribe
    assert (await offline_provider(manage_webhook="false").plan(event("WEBHOOK.DELETED"), {})).sync


async def test_other_triggers_are_acknowledged_and_ignored() -> None:
    for body in (event("FILE.PREVIEWED", {"type": "file", "id": "1"}), event("FILE.UPLOADED", {"type": "folder"})):
        plan = await offline_provider().plan(body, {})
        assert not (plan.items or plan.sync or plan.renew or plan.resubscribe)


@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"type": "event", "trigger": "FILE.UPLOADED"}'])
async def test_a_body_that_is_not_a_webhook_event_is_a_permanent_error(body: bytes) -> None:
    with pytest.raises(ProviderError) as refused:
        await offline_provider().plan(body, {})
    assert not refused.value.transient


async def test_no_webhook_on_the_root_folder() -> None:
    provider = offline_provider(manage_webhook=True, folder_id="0")
    with pytest.raises(ProviderError):
        await provider.subscribe(None)
    assert await offline_provider().subscribe(None) is None
