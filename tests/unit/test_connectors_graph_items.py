"""Microsoft Graph wire format -> provider types: driveItems (files, folders, the root, deletions), version tags,
paths, authors, permission principals, and what notifications ask for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from ragstream_connectors.providers.base import NotificationPlan, ProviderError
from ragstream_connectors.providers.graph_items import (
    author_of,
    change_from_item,
    drive_path,
    join_path,
    latest_occurrences,
    parse_time,
    plan_from_notifications,
    principals,
    version_tag,
)

pytestmark = pytest.mark.unit

STATE = "s3cret-client-state"
FILE: dict[str, Any] = {
    "id": "01ABC",
    "name": "Q1 report.docx",
    "eTag": '"{1A2B},4"',
    "lastModifiedDateTime": "2024-05-01T10:00:00Z",
    "webUrl": "https://contoso.sharepoint.com/sites/x/Shared%20Documents/Q1%20report.docx",
    "createdBy": {"user": {"displayName": "Adele Vance", "email": "adele@contoso.example"}},
    "lastModifiedBy": {"user": {"displayName": "Bob Kelly"}},
    "parentReference": {"driveId": "b!other", "driveType": "documentLibrary", "id": "01PARENT"},
    "size": 2048,
    "file": {
        "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "hashes": {"quickXorHash": "qx=="},
    },
}


def _change(item: dict[str, Any], **kwargs: Any) -> Any:
    return change_from_item(item, drive_id="b!drive", source_uri="https://graph/items/x", **kwargs)


def test_a_file_maps_every_field() -> None:
    change = _change(FILE, path="/Q1 report.docx", permissions=("user:a",))
    assert (change.item_id, change.name, change.path, change.author) == (
        "01ABC",
        "Q1 report.docx",
        "/Q1 report.docx",
        "Adele Vance",
    )
    assert change.modified_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert change.web_url == FILE["webUrl"] and change.size_bytes == 2048
    assert change.content_type.endswith("wordprocessingml.document")
    assert change.is_file and not change.deleted and change.permissions == ("user:a",)
    assert change.source_uri == "https://graph/items/x"
    assert change.extra == {"drive_id": "b!other"}  # the item's own drive wins over the configured one


@pytest.mark.parametrize(
    ("item", "tag"),
    [
        ({**FILE, "cTag": '"c:{1A2B},2"'}, 'ctag:"c:{1A2B},2"'),  # the content tag, where the API sends one
        (FILE, "qxh:qx=="),  # SharePoint's delta omits cTag: the content hash
        ({**FILE, "file": {"mimeType": "text/plain"}}, 'etag:"{1A2B},4"'),
        ({"id": "x"}, ""),
    ],
)
def test_version_tag_prefers_what_changes_with_content_only(item: dict[str, Any], tag: str) -> None:
    assert version_tag(item) == tag


@pytest.mark.parametrize(
    "item",
    [
        {"id": "f", "name": "Folder", "folder": {"childCount": 2}},
        {"id": "r", "name": "root", "folder": {}, "root": {}},
        {"id": "n", "name": "Notebook", "package": {"type": "oneNote"}},
    ],
)
def test_folders_the_root_and_packages_are_tracked_but_not_files(item: dict[str, Any]) -> None:
    change = _change(item)
    assert not change.is_file and not change.deleted and change.version_tag == ""


def test_the_deleted_facet_is_a_deletion_even_without_a_name() -> None:
    deleted = _change({"id": "01ABC", "deleted": {"state": "deleted"}, "file": {}, "parentReference": {}})
    assert deleted.deleted and deleted.is_file and deleted.name == "" and deleted.extra == {"drive_id": "b!drive"}
    folder = _change({"id": "01F", "deleted": {}, "folder": {}})
    assert folder.deleted and not folder.is_file


def test_author_is_the_creator_then_the_last_editor() -> None:
    assert author_of(FILE) == "Adele Vance"
    assert author_of({"createdBy": {"user": {"email": "a@x"}}}) == "a@x"
    by_an_app = {"createdBy": {"application": {"displayName": "Flow"}}, "lastModifiedBy": FILE["lastModifiedBy"]}
    assert author_of(by_an_app) == "Bob Kelly"
    assert author_of({}) == ""


def test_paths_come_from_percent_encoded_item_references() -> None:
    assert drive_path("/drives/b!x/root:/Reports/Q1%20final") == "/Reports/Q1 final"
    assert drive_path("/drive/root:") == ""
    assert drive_path("") == ""
    assert join_path("", "a.txt") == "/a.txt" and join_path("/Reports", "a.txt") == "/Reports/a.txt"


def test_the_last_occurrence_of_an_item_wins_and_takes_its_place() -> None:
    items: list[dict[str, Any]] = [{"id": "a", "v": 1}, {"id": "b", "v": 1}, {"id": "a", "v": 2}, {"v": "no id"}]
    assert latest_occurrences(items) == [{"id": "b", "v": 1}, {"id": "a", "v": 2}]


def test_times_with_seven_fraction_digits_parse() -> None:
    assert parse_time("2016-03-20T11:00:00.0000000Z") == datetime(2016, 3, 20, 11, tzinfo=UTC)
    assert parse_time("garbage") is None and parse_time(None) is None


def test_principals_from_grants_identities_and_links() -> None:
    permissions: list[dict[str, Any]] = [
        {"roles": ["owner"], "grantedToV2": {"siteGroup": {"displayName": "Eng Owners", "id": "3"}}},
        {"roles": ["read"], "grantedToV2": {"user": {"email": "bob@x", "id": "u1"}}},
        {"roles": ["read"], "grantedToV2": {"user": {"id": "u2"}, "siteUser": {"loginName": "i:0#.f|m|carol@x"}}},
        {"roles": ["write"], "grantedToV2": {"group": {"id": "g1", "displayName": "Sales"}}},
        {"roles": ["read"], "link": {"scope": "users"}, "grantedToIdentitiesV2": [{"user": {"email": "dan@x"}}]},
        {"roles": ["read"], "link": {"scope": "organization"}},
        {"roles": ["read"], "link": {"scope": "anonymous"}},
        {"roles": ["read"], "grantedToV2": {"user": {"email": "bob@x"}}},
    ]
    assert principals(permissions) == (
        "group:g1",
        "link:anonymous",
        "link:organization",
        "sitegroup:Eng Owners",
        "user:bob@x",
        "user:dan@x",
        "user:i:0#.f|m|carol@x",
        "user:u2",
    )


def _payload(*entries: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(entries)}).encode()


def _change_notification(state: str = STATE) -> dict[str, Any]:
    return {"subscriptionId": "s1", "clientState": state, "changeType": "updated", "resource": "drives/d/root"}


def _lifecycle(event: str, state: str = STATE) -> dict[str, Any]:
    return {"subscriptionId": "s1", "clientState": state, "lifecycleEvent": event}


@pytest.mark.parametrize(
    ("entries", "plan"),
    [
        ([_change_notification()], NotificationPlan(sync=True)),
        ([_lifecycle("reauthorizationRequired")], NotificationPlan(renew=True)),
        ([_lifecycle("subscriptionRemoved")], NotificationPlan(resubscribe=True)),
        ([_lifecycle("missed")], NotificationPlan(sync=True)),
        ([_change_notification("forged"), _lifecycle("subscriptionRemoved", "forged")], NotificationPlan()),
        ([_lifecycle("reauthorizationRequired"), _change_notification()], NotificationPlan(sync=True, renew=True)),
        ([], NotificationPlan()),
        (["not an object", _lifecycle("somethingNew")], NotificationPlan()),
    ],
)
def test_notification_plans(entries: list[Any], plan: NotificationPlan) -> None:
    assert plan_from_notifications(_payload(*entries), STATE) == plan


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"value": {}}'])
def test_malformed_notifications_are_permanent_errors(body: bytes) -> None:
    with pytest.raises(ProviderError) as error:
        plan_from_notifications(body, STATE)
    assert not error.value.transient
