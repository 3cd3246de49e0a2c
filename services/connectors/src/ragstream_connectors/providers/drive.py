"""Google Drive (API v3) as a provider: the changes feed, push notification channels and content downloads.

Protocol followed:
- changes (https://developers.google.com/drive/api/guides/manage-changes, .../reference/rest/v3/changes/list):
  `changes.getStartPageToken`, then `changes.list` from the saved token following `nextPageToken` until a page
  carries `newStartPageToken`, the token to save. A change with `removed` (deleted for good or access lost) or a
  trashed file is a deletion. Shared drives need `driveId` with `supportsAllDrives`/`includeItemsFromAllDrives`.
- A first sync takes the start page token FIRST, then lists every file (`files.list`); changes made while listing
  are replayed from that token afterwards, so none is lost.
- push notifications (https://developers.google.com/drive/api/guides/push): `changes.watch` opens a `web_hook`
  channel whose `token` Drive echoes in X-Goog-Channel-Token (checked at the gateway); the first message is a
  `sync` message, later ones say only that something changed. Channels on changes last at most a week and
  cannot be extended: renewing opens a new channel, then `channels.stop`s the old one.
- content: `files.get?alt=media` for binary files; `files.export` for Docs Editors files (10 MB limit).
- auth: the OAuth 2.0 refresh token grant (https://developers.google.com/identity/protocols/oauth2/web-server
  #offline) at the Google token endpoint.
- errors (https://developers.google.com/drive/api/guides/handle-errors): 429 and 5xx are retried by
  ProviderHttp; Drive also throttles with 403 `rateLimitExceeded`/`userRateLimitExceeded`, retried here with
  the same policy. An invalid page token (400 `invalid` at `pageToken`) is CursorExpired.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from ragstream_common.logs import get_logger

from ragstream_connectors.providers.base import (
    ChangePage,
    ConnectorContext,
    CursorExpired,
    Downloaded,
    ItemChange,
    NotificationPlan,
    Provider,
    ProviderError,
    Subscription,
)
from ragstream_connectors.providers.drive_items import (
    CHANGE_FIELDS,
    FOLDER,
    FOLDER_FIELDS,
    LIST_FIELDS,
    PROVIDER,
    enumeration_cursor,
    is_invalid_page_token,
    is_rate_limited,
    item_from_change,
    item_from_file,
    parse_enumeration_cursor,
)
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.http import OAuthToken, ProviderHttp, RetryPolicy

log = get_logger(__name__)
T = TypeVar("T")
PAGE_SIZE = 1000  # the maximum Drive allows for files.list and changes.list
# The longest a channel on the changes resource may live is one week; ask a minute less so it is never refused.
CHANNEL_LIFETIME = timedelta(days=7) - timedelta(minutes=1)
MAX_FOLDER_DEPTH = 64


class DriveProvider:
    """One gdrive connector: My Drive (and files shared with the user), or one shared drive (`drive_id`)."""

    def __init__(
        self,
        context: ConnectorContext,
        endpoints: ProviderEndpoints,
        http: ProviderHttp,
        *,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._context = context
        self._api = endpoints.drive_api_url.rstrip("/")
        self._http = http
        self._page_size = page_size
        self._clock = clock
        self._drive_id = str(context.config.get("drive_id") or "")
        # Folder id -> (name, parent id): paths are built from it; cleared per sync so renames show up.
        self._folders: dict[str, tuple[str, str | None]] = {}

    # --- changes ---------------------------------------------------------------------------------------
    async def changes(self, cursor: str | None) -> AsyncIterator[ChangePage]:
        self._folders.clear()
        if cursor is None:
            start = await self._start_page_token()
            async for page in self._enumerate(start, None):
                yield page
            return
        if cursor.startswith("{"):
            resumed = parse_enumeration_cursor(cursor)
            if resumed is None:
                raise CursorExpired(f"unreadable enumeration cursor {cursor[:80]!r}")
            async for page in self._enumerate(*resumed):
                yield page
            return
        async for page in self._changes_since(cursor):
            yield page

    async def _enumerate(self, start: str, files_page: str | None) -> AsyncIterator[ChangePage]:
        """Every file not in the trash, page by page; the last page's cursor is the start page token."""
        while True:
            params = {**self._list_scope(), "q": "trashed = false", "fields": LIST_FIELDS, "pageSize": self._page_size}
            if files_page:
                params["pageToken"] = files_page
            body = await self._paged("GET", f"{self._api}/files", params=params)
            items = [await self._item_from_file(file) for file in body.get("files", [])]
            files_page = body.get("nextPageToken")
            if not files_page:
                yield ChangePage(items, start, final=True)
                return
            yield ChangePage(items, enumeration_cursor(start, files_page), final=False)

    async def _changes_since(self, token: str) -> AsyncIterator[ChangePage]:
        while True:
            params = {
                **self._change_scope(),
                "pageToken": token,
                "fields": CHANGE_FIELDS,
                "pageSize": self._page_size,
                "includeRemoved": "true",
            }
            body = await self._paged("GET", f"{self._api}/changes", params=params)
            items = [item for change in body.get("changes", []) if (item := await self._item_from_change(change))]
            if body.get("newStartPageToken"):
                yield ChangePage(items, str(body["newStartPageToken"]), final=True)
                return
            if not body.get("nextPageToken"):
                raise ProviderError("changes.list answered neither nextPageToken nor newStartPageToken", transient=True)
            token = str(body["nextPageToken"])
            yield ChangePage(items, token, final=False)

    async def _item_from_change(self, change: Mapping[str, Any]) -> ItemChange | None:
        file = change.get("file") or {}
        path = "" if change.get("removed") or not file else await self._path(file)
        return item_from_change(change, path=path, api_url=self._api)

    async def _item_from_file(self, file: Mapping[str, Any]) -> ItemChange:
        return item_from_file(file, path=await self._path(file), api_url=self._api)

    async def _path(self, file: Mapping[str, Any]) -> str:
        """`/Folder/Sub/name` below the drive's root. Drive has no paths, only parent ids: each folder is looked
        up once per sync; the walk stops at the root (no parents) or a folder the user cannot see."""
        if file.get("mimeType") == FOLDER:
            parents = file.get("parents") or []
            self._folders[str(file["id"])] = (str(file.get("name", "")), str(parents[0]) if parents else None)
        names = [str(file.get("name", ""))]
        parents = file.get("parents") or []
        parent: str | None = str(parents[0]) if parents else None
        for _ in range(MAX_FOLDER_DEPTH):
            if parent is None:
                break
            folder = await self._folder(parent)
            if folder is None or folder[1] is None:  # unreadable, or the root itself ("My Drive", a shared drive)
                break
            names.append(folder[0])
            parent = folder[1]
        return "/" + "/".join(reversed(names))

    async def _folder(self, folder_id: str) -> tuple[str, str | None] | None:
        if folder_id not in self._folders:
            try:
                body = await self._call(
                    "GET",
                    f"{self._api}/files/{quote(folder_id, safe='')}",
                    params={"fields": FOLDER_FIELDS, "supportsAllDrives": "true"},
                )
            except ProviderError as exc:
                if exc.status in (403, 404):
                    return None
                raise
            parents = body.get("parents") or []
            self._folders[folder_id] = (str(body.get("name", "")), str(parents[0]) if parents else None)
        return self._folders[folder_id]

    # --- notifications ---------------------------------------------------------------------------------
    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        """Drive's messages carry no body: `sync` opens a channel (nothing to do), anything else means the
        changes feed moved."""
        if attributes.get("x-goog-resource-state", "").strip().lower() == "sync":
            return NotificationPlan()
        return NotificationPlan(sync=True)

    # --- content ---------------------------------------------------------------------------------------
    async def download(self, item: ItemChange, directory: Path) -> Downloaded:
        file_url = f"{self._api}/files/{quote(item.item_id, safe='')}"
        export_mime = item.extra.get("export_mime", "")
        if export_mime:
            url = httpx.URL(f"{file_url}/export", params={"mimeType": export_mime})
        else:
            url = httpx.URL(file_url, params={"alt": "media", "supportsAllDrives": "true"})
        downloaded = await self._http.download(str(url), directory)
        if downloaded.content_type:
            return downloaded
        return Downloaded(downloaded.path, downloaded.size_bytes, downloaded.sha256, export_mime or item.content_type)

    # --- channels --------------------------------------------------------------------------------------
    async def subscribe(self, existing: Subscription | None) -> Subscription | None:
        """Watch the changes feed from now; a renewal opens the new channel before stopping the old one."""
        token = await self._start_page_token()
        expires = self._clock() + CHANNEL_LIFETIME
        channel = {
            "id": str(uuid.uuid4()),
            "type": "web_hook",
            "address": self._context.webhook_url,
            "token": self._context.secrets["channel_token"],
            "expiration": str(int(expires.timestamp() * 1000)),
        }
        body = await self._call(
            "POST", f"{self._api}/changes/watch", params={**self._change_scope(), "pageToken": token}, json=channel
        )
        subscription = Subscription(
            subscription_id=str(body["id"]),
            expires_at=_from_millis(body.get("expiration")),
            resource=str(body.get("resourceId", "")),
        )
        if existing is not None:
            try:
                await self.unsubscribe(existing)
            except ProviderError as exc:  # the new channel works; the old one expires within a week anyway
                log.warning(
                    "could not stop the previous drive channel",
                    connector_id=self._context.connector_id,
                    channel_id=existing.subscription_id,
                    error=str(exc),
                )
        return subscription

    async def unsubscribe(self, existing: Subscription) -> None:
        """channels.stop; a channel that already expired or was stopped answers 404, which is fine."""
        body = {"id": existing.subscription_id, "resourceId": existing.resource}
        try:
            await self._http.request("POST", f"{self._api}/channels/stop", json=body)
        except ProviderError as exc:
            if exc.status != 404:
                raise

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- calls -----------------------------------------------------------------------------------------
    async def _start_page_token(self) -> str:
        params: dict[str, Any] = {"supportsAllDrives": "true"}
        if self._drive_id:
            params["driveId"] = self._drive_id
        body = await self._call("GET", f"{self._api}/changes/startPageToken", params=params)
        return str(body["startPageToken"])

    def _list_scope(self) -> dict[str, Any]:
        if self._drive_id:
            return {
                "corpora": "drive",
                "driveId": self._drive_id,
                "includeItemsFromAllDrives": "true",
                "supportsAllDrives": "true",
            }
        return {"corpora": "user", "spaces": "drive", "supportsAllDrives": "true"}

    def _change_scope(self) -> dict[str, Any]:
        if self._drive_id:
            return {"driveId": self._drive_id, "includeItemsFromAllDrives": "true", "supportsAllDrives": "true"}
        return {"spaces": "drive", "supportsAllDrives": "true"}

    async def _paged(self, method: str, url: str, **kwargs: Any) -> Any:
        """A call that carries a page token: Drive's refusal of the token means enumerate everything again."""
        try:
            return await self._call(method, url, **kwargs)
        except ProviderError as exc:
            if is_invalid_page_token(exc):
                raise CursorExpired(str(exc)) from exc
            raise

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        return await self._http.json(method, url, **kwargs)


def _from_millis(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def build(
    context: ConnectorContext,
    endpoints: ProviderEndpoints,
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    """A Drive provider signed in with the connector's refresh token (config client_id; secrets client_secret,
    refresh_token, channel_token)."""
    token = OAuthToken(
        endpoints.google_token_url,
        {
            "grant_type": "refresh_token",
            "client_id": str(context.config["client_id"]),
            "client_secret": context.secrets["client_secret"],
            "refresh_token": context.secrets["refresh_token"],
        },
    )
    http = ProviderHttp(PROVIDER, token, policy=policy, transport=transport, is_throttled=is_rate_limited)
    return DriveProvider(context, endpoints, http)
