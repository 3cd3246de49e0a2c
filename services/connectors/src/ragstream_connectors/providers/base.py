"""What the sync engine needs of a document management system, free of any one provider's wire format.

A provider module (graph.py, box.py, drive.py, webhook.py) turns its API into these types. The sync engine
(sync.py) owns versions, blobs, events and the saved cursor; a provider only lists changes, downloads content and
manages its subscription. Provider calls go through `ProviderHttp` (http.py): throttling and transient failures
are retried there, so a provider raises only what retrying cannot fix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


class CursorExpired(Exception):
    """The saved cursor is no longer valid (Graph 410 Gone, Drive invalid page token): enumerate everything."""


class ProviderError(Exception):
    """A provider call that failed; `transient` ones (throttling, 5xx, network) are retried by the consumer."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        # The start of the provider's error body, for provider-specific reasons (Drive's `errors[].reason`).
        self.body = body


@dataclass(frozen=True)
class ItemChange:
    """One item as the provider reports it now: present (upsert) or gone (`deleted`, trashed or removed)."""

    item_id: str
    deleted: bool = False
    name: str = ""
    path: str = ""
    author: str = ""
    modified_at: datetime | None = None
    web_url: str = ""
    # The provider's change marker (eTag/cTag, sha1 + version id, Drive version): unchanged tag, no download.
    version_tag: str = ""
    content_type: str = ""
    size_bytes: int | None = None
    # Who may read the item (user/group principals as the provider names them), for document-level ACLs later.
    permissions: tuple[str, ...] = ()
    # The item's API URL (DocumentSource is the blob; this is where it came from).
    source_uri: str = ""
    # Folders, notebooks, shortcuts...: tracked so a delete is noticed, never downloaded.
    is_file: bool = True
    # Provider-specific facts the download needs (Drive's export MIME type, Graph's drive id).
    extra: Mapping[str, str] = field(default_factory=dict)
    # Generic webhooks only: content that came in the notification itself (text or decoded base64) ...
    inline_content: bytes | None = field(default=None, repr=False)
    # ... or a URL the ingest worker fetches through its SSRF guard (published as DocumentSource.uri).
    content_url: str = ""


@dataclass(frozen=True)
class NotificationPlan:
    """What a verified notification asks the engine to do."""

    # Items the notification itself names (Box events, generic webhooks): applied directly.
    items: list[ItemChange] = field(default_factory=list)
    # Run `changes` from the saved cursor (Graph and Drive notifications only say "something changed").
    sync: bool = False
    # Renew the subscription now (Graph lifecycle `reauthorizationRequired`).
    renew: bool = False
    # The subscription is gone (Graph `subscriptionRemoved`): subscribe anew, then enumerate everything.
    resubscribe: bool = False


@dataclass(frozen=True)
class ChangePage:
    """One page of changes and where to continue: `cursor` resumes after this page; `final` when it is the
    delta link / new start page token / stream position to save until the next sync."""

    changes: list[ItemChange]
    cursor: str
    final: bool


@dataclass(frozen=True)
class Downloaded:
    """Content streamed to `path` (a temporary file the caller deletes)."""

    path: Path
    size_bytes: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class Subscription:
    """A provider subscription (Graph) or watch channel (Drive) or webhook (Box)."""

    subscription_id: str
    expires_at: datetime | None
    # Drive's resourceId (needed to stop a channel); Graph's resource path.
    resource: str = ""


@dataclass(frozen=True)
class ConnectorContext:
    """One connector as the worker sees it: decrypted secrets, its config and its public webhook URL."""

    tenant_id: str
    connector_id: str
    provider: str
    config: Mapping[str, Any]
    secrets: Mapping[str, str]
    webhook_url: str


class Provider(Protocol):
    """One connector's view of its document management system."""

    def changes(self, cursor: str | None) -> AsyncIterator[ChangePage]:
        """Changes since `cursor` (None: enumerate everything), page by page; CursorExpired when it is stale."""
        ...

    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        """What a verified notification (ConnectorNotified.payload and .attributes) asks for. An empty plan
        acknowledges it and does nothing (Drive's initial `sync` message)."""
        ...

    async def download(self, item: ItemChange, directory: Path) -> Downloaded:
        """Stream the item's content into a new file under `directory`, never holding it whole in memory."""
        ...

    async def subscribe(self, existing: Subscription | None) -> Subscription | None:
        """Create (or renew, given `existing`) the subscription that sends notifications; None if the provider
        needs none of ours (generic webhooks, Box webhooks configured by the customer)."""
        ...

    async def unsubscribe(self, existing: Subscription) -> None: ...

    async def aclose(self) -> None: ...
