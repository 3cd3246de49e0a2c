"""Generic signed webhooks (`type: "webhook"`): the customer's system pushes each document change to us.

The gateway verified the request (Standard Webhooks, https://www.standardwebhooks.com/, through the
`standardwebhooks` library) before publishing it; here its body becomes one item:

    {"type": "document.upserted" | "document.deleted",
     "data": {"id", "title"?, "content_type"?, "text"? | "content_base64"? | "url"?, "metadata"?}}

Text and base64 content travel in the notification itself (written to a file by `download`, like any other
provider's content); a `url` is published as the document's source and fetched by the ingest worker through its
SSRF guard. There is nothing to list and no subscription: the customer's system is the only source of changes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ragstream_common.events import PermanentError

from ragstream_connectors.items import metadata_from
from ragstream_connectors.providers.base import (
    ChangePage,
    ConnectorContext,
    Downloaded,
    ItemChange,
    NotificationPlan,
    Provider,
    ProviderError,
    Subscription,
)
from ragstream_connectors.providers.endpoints import ProviderEndpoints

if TYPE_CHECKING:
    import httpx

    from ragstream_connectors.providers.http import RetryPolicy

EVENT_TYPES = frozenset({"document.upserted", "document.deleted"})
CONTENT_FIELDS = ("text", "content_base64", "url")
MAX_ID_CHARS = 1024
MAX_METADATA_ENTRIES = 64


class WebhookProvider:
    """A `Provider` over the bodies of verified generic webhook requests."""

    def __init__(self, context: ConnectorContext) -> None:
        self._context = context

    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        return NotificationPlan(items=[item_from_body(payload)])

    async def changes(self, cursor: str | None) -> AsyncIterator[ChangePage]:
        yield ChangePage([], cursor or "", final=True)

    async def download(self, item: ItemChange, directory: Path) -> Downloaded:
        if item.inline_content is None:
            raise ProviderError(f"item {item.item_id!r} came without content", transient=False)
        return await asyncio.to_thread(_write, item.inline_content, item.content_type, directory)

    async def subscribe(self, existing: Subscription | None) -> Subscription | None:
        return None

    async def unsubscribe(self, existing: Subscription) -> None:
        return None

    async def aclose(self) -> None:
        return None


def build(
    context: ConnectorContext,
    endpoints: ProviderEndpoints,
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    return WebhookProvider(context)


def item_from_body(payload: bytes) -> ItemChange:
    """The item a `document.upserted` or `document.deleted` body names; PermanentError saying what is wrong."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PermanentError(f"webhook body is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("type") not in EVENT_TYPES:
        raise PermanentError(f"webhook body needs a type of {sorted(EVENT_TYPES)}")
    data = body.get("data")
    if not isinstance(data, dict):
        raise PermanentError("webhook body needs a data object")
    item_id = data.get("id")
    if not isinstance(item_id, str) or not item_id.strip() or len(item_id) > MAX_ID_CHARS:
        raise PermanentError(f"data.id must be a non-empty string of at most {MAX_ID_CHARS} characters")
    if body["type"] == "document.deleted":
        return ItemChange(item_id=item_id, deleted=True)
    return _upserted(item_id, data)


def _upserted(item_id: str, data: dict[str, Any]) -> ItemChange:
    title, content_type = _optional_text(data, "title"), _optional_text(data, "content_type")
    given = [name for name in CONTENT_FIELDS if data.get(name) is not None]
    if len(given) != 1:
        raise PermanentError("document.upserted needs exactly one of data.text, data.content_base64, data.url")
    value = data[given[0]]
    if not isinstance(value, str):
        raise PermanentError(f"data.{given[0]} must be a string")
    extra = metadata_from(_metadata(data.get("metadata")))
    if given[0] == "url":
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
            raise PermanentError("data.url must be an http(s) URL")
        return ItemChange(
            item_id=item_id, name=title, content_type=content_type, content_url=value, source_uri=value, extra=extra
        )
    if given[0] == "text":
        content = value.encode("utf-8")
        content_type = content_type or "text/plain"
    else:
        try:
            content = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise PermanentError("data.content_base64 is not valid base64") from None
    return ItemChange(
        item_id=item_id,
        name=title,
        content_type=content_type,
        size_bytes=len(content),
        inline_content=content,
        extra=extra,
    )


def _optional_text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PermanentError(f"data.{name} must be a string")
    return value


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA_ENTRIES:
        raise PermanentError(f"data.metadata must be an object of at most {MAX_METADATA_ENTRIES} entries")
    if not all(isinstance(v, str) for v in value.values()):
        raise PermanentError("data.metadata values must be strings")
    return {str(k): v for k, v in value.items()}


def _write(content: bytes, content_type: str, directory: Path) -> Downloaded:
    with tempfile.NamedTemporaryFile(dir=directory, prefix="webhook-", delete=False) as handle:
        handle.write(content)
    return Downloaded(Path(handle.name), len(content), hashlib.sha256(content).hexdigest(), content_type)
