"""Drive v3 JSON to ItemChange (files, changes, export formats, version tags, principals), what Drive's error
bodies mean to the provider, enumeration cursors, and how a push notification is planned."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from ragstream_connectors.providers.base import ConnectorContext, ProviderError
from ragstream_connectors.providers.drive import DriveProvider
from ragstream_connectors.providers.drive_items import (
    enumeration_cursor,
    is_invalid_page_token,
    is_rate_limited,
    item_from_change,
    item_from_file,
    parse_enumeration_cursor,
    principals,
    version_tag,
)
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.http import ProviderHttp

pytestmark = pytest.mark.unit
API = "https://www.googleapis.com/drive/v3"


def _file(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "1AbC",
        "name": "report.pdf",
        "mimeType": "application/pdf",
        "md5Checksum": "9e107d9d372bb6826bd81d3542a419d6",
        "version": "12",
        "size": "2048",
        "modifiedTime": "2024-05-01T10:20:30.123Z",
        "lastModifyingUser": {"displayName": "Alice Example", "emailAddress": "alice@example.com"},
        "webViewLink": "https://drive.google.com/file/d/1AbC/view?usp=drivesdk",
        "parents": ["0Aroot"],
        "trashed": False,
        "permissions": [{"type": "user", "role": "owner", "emailAddress": "Alice@Example.com"}],
    }
    return base | fields


def test_a_binary_file_maps_every_field() -> None:
    item = item_from_file(_file(), path="/Reports/report.pdf", api_url=API)
    assert item.item_id == "1AbC" and not item.deleted and item.is_file
    assert (item.name, item.path, item.author) == ("report.pdf", "/Reports/report.pdf", "Alice Example")
    assert item.modified_at == datetime(2024, 5, 1, 10, 20, 30, 123000, tzinfo=UTC)
    assert item.web_url == "https://drive.google.com/file/d/1AbC/view?usp=drivesdk"
    assert item.version_tag == "md5:9e107d9d372bb6826bd81d3542a419d6"
    assert (item.content_type, item.size_bytes) == ("application/pdf", 2048)
    assert item.permissions == ("user:alice@example.com",)
    assert item.source_uri == f"{API}/files/1AbC" and "export_mime" not in item.extra


@pytest.mark.parametrize(
    ("mime_type", "export"),
    [
        ("application/vnd.google-apps.document", "text/markdown"),
        ("application/vnd.google-apps.spreadsheet", "text/csv"),
        ("application/vnd.google-apps.presentation", "text/plain"),
    ],
)
def test_docs_editors_files_are_exported_to_a_format_ingest_reads(mime_type: str, export: str) -> None:
    doc = _file(mimeType=mime_type, md5Checksum=None, size="99")
    item = item_from_file(doc, path="/Plan", api_url=API)
    assert item.is_file and item.extra["export_mime"] == export and item.content_type == export
    assert item.size_bytes is None  # the export's size is not the stored size
    assert item.version_tag == "v:12"


@pytest.mark.parametrize(
    "mime_type",
    [
        "application/vnd.google-apps.folder",
        "application/vnd.google-apps.shortcut",
        "application/vnd.google-apps.form",
        "application/vnd.google-apps.drawing",
    ],
)
def test_folders_shortcuts_and_unreadable_google_types_are_tracked_not_downloaded(mime_type: str) -> None:
    item = item_from_file(_file(mimeType=mime_type, md5Checksum=None), path="/x", api_url=API)
    assert not item.is_file and "export_mime" not in item.extra


def test_a_trashed_file_is_a_deletion_that_keeps_its_name() -> None:
    change = {"changeType": "file", "fileId": "1AbC", "removed": False, "file": _file(trashed=True)}
    item = item_from_change(change, path="/report.pdf", api_url=API)
    assert item is not None and item.deleted and item.name == "report.pdf"


def test_a_removed_change_is_a_deletion_without_a_file() -> None:
    item = item_from_change({"changeType": "file", "fileId": "1AbC", "removed": True}, path="", api_url=API)
    assert item is not None and item.deleted and item.item_id == "1AbC" and item.source_uri == f"{API}/files/1AbC"


@pytest.mark.parametrize(
    "change",
    [
        {"changeType": "drive", "driveId": "0Ashared", "removed": False},
        {"changeType": "file", "removed": True},
    ],
)
def test_changes_naming_no_file_are_skipped(change: dict[str, Any]) -> None:
    assert item_from_change(change, path="", api_url=API) is None


def test_version_tag_prefers_the_content_hash_then_the_version_then_the_time() -> None:
    assert version_tag({"md5Checksum": "abc", "version": "3"}) == "md5:abc"
    assert version_tag({"version": "3", "modifiedTime": "t"}) == "v:3"
    assert version_tag({"modifiedTime": "2024-01-01T00:00:00Z"}) == "t:2024-01-01T00:00:00Z"


def test_permissions_become_sorted_unique_principals() -> None:
    permissions = [
        {"type": "user", "emailAddress": "Bob@Example.com"},
        {"type": "group", "emailAddress": "eng@example.com"},
        {"type": "domain", "domain": "Example.com"},
        {"type": "anyone"},
        {"type": "user", "emailAddress": "bob@example.com"},
        {"type": "user"},  # a deleted account: no address, no principal
    ]
    assert principals(permissions) == (
        "domain:example.com", "group:eng@example.com", "link:anyone", "user:bob@example.com"
    )  # fmt: skip


def _refusal(status: int, body: str) -> ProviderError:
    """As ProviderHttp words a refusal: method, url, status and the start of the body."""
    return ProviderError(f"GET {API}/changes: {status} {body[:300]}", transient=False, status=status, body=body)


def test_a_403_is_throttling_only_for_the_rate_limit_reasons() -> None:
    body = (
        '{"error": {"code": 403, "message": "User rate limit exceeded.", "errors": [{"message": "User rate limit '
        'exceeded.", "domain": "usageLimits", "reason": "userRateLimitExceeded"}]}}'
    )
    assert is_rate_limited(httpx.Response(403, text=body))
    assert not is_rate_limited(
        httpx.Response(403, text=body.replace("userRateLimitExceeded", "insufficientFilePermissions"))
    )
    assert not is_rate_limited(httpx.Response(403, text="<html>Forbidden</html>"))
    assert not is_rate_limited(httpx.Response(400, text=body))


def test_only_a_400_about_the_page_token_is_an_expired_cursor() -> None:
    body = (
        '{"error": {"code": 400, "message": "Invalid Value", "errors": [{"message": "Invalid Value", "domain": '
        '"global", "reason": "invalid", "location": "pageToken", "locationType": "parameter"}]}}'
    )
    assert is_invalid_page_token(_refusal(400, body))
    assert not is_invalid_page_token(_refusal(400, body.replace("pageToken", "q")))
    assert not is_invalid_page_token(_refusal(404, body))


def test_enumeration_cursors_round_trip_and_are_never_change_tokens() -> None:
    cursor = enumeration_cursor("4211", "~!!~AI9FV7Q:xyz")
    assert parse_enumeration_cursor(cursor) == ("4211", "~!!~AI9FV7Q:xyz")
    assert parse_enumeration_cursor("4211") is None
    assert parse_enumeration_cursor("{broken") is None


@pytest.mark.parametrize(
    ("attributes", "sync"),
    [
        ({"x-goog-resource-state": "sync", "x-goog-message-number": "1"}, False),
        ({"x-goog-resource-state": "change", "x-goog-message-number": "2"}, True),
        ({}, True),
    ],
)
async def test_a_sync_message_is_acknowledged_and_any_other_asks_for_a_sync(
    attributes: dict[str, str], sync: bool
) -> None:
    context = ConnectorContext("t1", "con_0123456789abcdef", "gdrive", {"client_id": "c"}, {}, "https://hook")
    provider = DriveProvider(context, ProviderEndpoints(), ProviderHttp("gdrive", None))
    try:
        plan = await provider.plan(b"", attributes)
    finally:
        await provider.aclose()
    assert (plan.sync, plan.items, plan.renew, plan.resubscribe) == (sync, [], False, False)
