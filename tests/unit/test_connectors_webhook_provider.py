"""The generic webhook provider: verified Standard Webhooks bodies into items, and the shapes it refuses; plus
the provider factory."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from ragstream_common.events import PermanentError
from ragstream_connectors.items import METADATA_PREFIX, event_metadata
from ragstream_connectors.providers.base import ConnectorContext, ItemChange, ProviderError, Subscription
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.factory import build_provider
from ragstream_connectors.providers.webhook import WebhookProvider, item_from_body

pytestmark = pytest.mark.unit
GRAPH_SECRETS = {"client_secret": "s", "client_state": "x" * 32}
CONTEXT = ConnectorContext("t1", "con_0123456789abcdef", "webhook", {}, {"signing_secret": "whsec_x"}, "https://x")


def body(kind: str = "document.upserted", **data: Any) -> bytes:
    return json.dumps({"type": kind, "data": {"id": "doc-1", **data}}).encode()


async def test_text_content_is_carried_in_the_item() -> None:
    plan = await WebhookProvider(CONTEXT).plan(body(title="Refunds", text="Refunds take 30 days."), {})
    (item,) = plan.items
    assert not plan.sync and not plan.renew and not plan.resubscribe
    assert (item.item_id, item.name, item.content_type) == ("doc-1", "Refunds", "text/plain")
    assert item.inline_content == b"Refunds take 30 days." and item.size_bytes == len(item.inline_content)


def test_base64_content_keeps_its_declared_type() -> None:
    pdf = b"%PDF-1.7 fake"
    item = item_from_body(body(content_base64=base64.b64encode(pdf).decode(), content_type="application/pdf"))
    assert item.inline_content == pdf and item.content_type == "application/pdf" and item.name == ""


def test_a_url_is_left_for_the_ingest_worker_to_fetch() -> None:
    item = item_from_body(body(url="https://docs.example.com/a.html", metadata={"team": "support"}))
    assert item.content_url == item.source_uri == "https://docs.example.com/a.html" and item.inline_content is None
    assert dict(item.extra) == {f"{METADATA_PREFIX}team": "support"}
    assert event_metadata("con_0123456789abcdef", "webhook", item)["team"] == "support"


def test_a_delete_names_only_the_item() -> None:
    assert item_from_body(body("document.deleted")) == ItemChange(item_id="doc-1", deleted=True)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "type"),
        (json.dumps({"type": "document.moved", "data": {"id": "x"}}).encode(), "type"),
        (json.dumps({"type": "document.upserted"}).encode(), "data object"),
        (json.dumps({"type": "document.deleted", "data": {"id": ""}}).encode(), "data.id"),
        (json.dumps({"type": "document.deleted", "data": {"id": 7}}).encode(), "data.id"),
        (body(), "exactly one"),
        (body(text="a", url="https://x"), "exactly one"),
        (body(text=7), "must be a string"),
        (body(content_base64="***"), "base64"),
        (body(url="file:///etc/passwd"), "http(s)"),
        (body(url="https://"), "http(s)"),
        (body(text="a", title=["x"]), "data.title"),
        (body(text="a", metadata={"n": 1}), "strings"),
        (body(text="a", metadata=["x"]), "data.metadata"),
        (body(text="a", metadata={str(i): "v" for i in range(65)}), "data.metadata"),
    ],
)
def test_bad_bodies_are_permanent_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PermanentError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        item_from_body(payload)


async def test_download_writes_the_inline_content_to_a_file(tmp_path: Path) -> None:
    provider = WebhookProvider(CONTEXT)
    item = item_from_body(body(text="hello"))
    downloaded = await provider.download(item, tmp_path)
    assert downloaded.path.parent == tmp_path and downloaded.path.read_bytes() == b"hello"
    assert downloaded.sha256 == hashlib.sha256(b"hello").hexdigest() and downloaded.size_bytes == 5
    with pytest.raises(ProviderError):
        await provider.download(ItemChange(item_id="x", content_url="https://x"), tmp_path)


async def test_nothing_to_list_and_no_subscription() -> None:
    provider = WebhookProvider(CONTEXT)
    pages = [page async for page in provider.changes(None)]
    assert len(pages) == 1 and pages[0].final and pages[0].changes == []
    assert [page.cursor async for page in provider.changes("c")] == ["c"]
    assert await provider.subscribe(None) is None
    await provider.unsubscribe(Subscription("none", None))
    await provider.aclose()


@pytest.mark.parametrize(
    ("kind", "config", "secrets", "expected"),
    [
        ("sharepoint", {"tenant": "t", "client_id": "c", "drive_id": "d"}, GRAPH_SECRETS, "GraphProvider"),
        ("onedrive", {"tenant": "t", "client_id": "c", "drive_id": "d"}, GRAPH_SECRETS, "GraphProvider"),
        (
            "box",
            {"client_id": "c", "subject_type": "enterprise", "subject_id": "1"},
            {"client_secret": "s"},
            "BoxProvider",
        ),
        ("gdrive", {"client_id": "c"}, {"client_secret": "s", "refresh_token": "r"}, "DriveProvider"),
        ("webhook", {}, {"signing_secret": "whsec_x"}, "WebhookProvider"),
    ],
)
async def test_the_factory_builds_the_provider_of_each_type(
    kind: str, config: dict[str, str], secrets: dict[str, str], expected: str
) -> None:
    context = ConnectorContext("t1", "con_0123456789abcdef", kind, config, secrets, "https://x/v1/webhooks/c")
    provider = build_provider(context, ProviderEndpoints())
    assert type(provider).__name__ == expected
    await provider.aclose()


def test_the_factory_refuses_an_unknown_type() -> None:
    with pytest.raises(PermanentError, match="unknown connector type"):
        build_provider(ConnectorContext("t1", "con_x", "dropbox", {}, {}, ""), ProviderEndpoints())
