"""Microsoft Graph as a provider: SharePoint document libraries and OneDrive (both are Graph drives).

Protocol followed:
- auth: the client credentials grant (https://learn.microsoft.com/entra/identity-platform/
  v2-oauth2-client-creds-grant-flow): POST {login}/{tenant}/oauth2/v2.0/token with the app's client id and
  secret and scope `https://graph.microsoft.com/.default` (application permission Files.Read.All or
  Sites.Read.All, admin-consented).
- changes: `GET /drives/{drive-id}/root/delta` (https://learn.microsoft.com/graph/api/driveitem-delta), pages
  linked by `@odata.nextLink` up to an `@odata.deltaLink`, which is saved for the next sync. The cursor is the
  full link; it is followed only when it starts with the configured Graph URL (a stored or returned link never
  sends the bearer token elsewhere). `410 Gone` (token expired, resync required) surfaces as CursorExpired from
  ProviderHttp: the engine enumerates again. Delta never carries `parentReference.path`, so paths are rebuilt
  from the folders in the feed, plus one GET per folder it does not carry.
- content: `GET /drives/{drive-id}/items/{item-id}/content` answers 302 to a pre-authenticated download URL
  (https://learn.microsoft.com/graph/api/driveitem-get-content), fetched by ProviderHttp without the bearer.
- permissions: `GET /drives/{drive-id}/items/{item-id}/permissions` per changed file
  (https://learn.microsoft.com/graph/api/driveitem-list-permissions): one extra call per file, bounded to a few
  at a time; a 403/404 there records no principals rather than failing the sync.
- notifications: a subscription on `/drives/{drive-id}/root`, changeType `updated`, with the same URL for
  notifications and lifecycle notifications and the connector's clientState
  (https://learn.microsoft.com/graph/api/subscription-post-subscriptions); driveItem subscriptions last at most
  42,300 minutes, so 29 days are asked for and renewed by PATCHing expirationDateTime
  (https://learn.microsoft.com/graph/api/subscription-update); a renewal that finds the subscription gone (404)
  creates a new one; DELETE ends it (https://learn.microsoft.com/graph/api/subscription-delete).
- throttling (https://learn.microsoft.com/graph/throttling): 429/503 with Retry-After, handled by ProviderHttp.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
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
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.graph_items import (
    change_from_item,
    drive_path,
    is_root,
    join_path,
    latest_occurrences,
    parent_id,
    parse_time,
    plan_from_notifications,
    principals,
)
from ragstream_connectors.providers.http import OAuthToken, ProviderHttp, RetryPolicy, redacted

log = get_logger(__name__)

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# driveItem subscriptions may last 42,300 minutes (~29.4 days); ask for a little less so it is never refused.
SUBSCRIPTION_LIFETIME = timedelta(days=29)
PERMISSION_LOOKUPS_AT_ONCE = 4
MAX_FOLDER_DEPTH = 64


def _segment(value: str) -> str:
    # Drive ids look like `b!Xy-_…`: keep `!` readable, escape anything that could change the path.
    return quote(value, safe="!")


class GraphProvider:
    """One sharepoint/onedrive connector: the drive `config["drive_id"]` of Entra tenant `config["tenant"]`."""

    def __init__(
        self,
        context: ConnectorContext,
        endpoints: ProviderEndpoints,
        *,
        policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        missing = [key for key in ("tenant", "client_id", "drive_id") if not context.config.get(key)]
        missing += [key for key in ("client_secret", "client_state") if not context.secrets.get(key)]
        if missing:
            raise ProviderError(f"graph connector lacks {', '.join(missing)}", transient=False)
        self._context = context
        self._api = endpoints.graph_api_url.rstrip("/")
        self._drive_id = str(context.config["drive_id"])
        self._drive_url = f"{self._api}/drives/{_segment(self._drive_id)}"
        self._resource = f"/drives/{self._drive_id}/root"
        self._clock = clock
        token = OAuthToken(
            f"{endpoints.microsoft_login_url.rstrip('/')}/{quote(str(context.config['tenant']), safe='')}"
            "/oauth2/v2.0/token",
            {
                "grant_type": "client_credentials",
                "client_id": str(context.config["client_id"]),
                "client_secret": context.secrets["client_secret"],
                "scope": GRAPH_SCOPE,
            },
        )
        self._http = ProviderHttp(context.provider, token, policy=policy, transport=transport, sleep=sleep)

    # --- changes ---------------------------------------------------------------------------------------
    async def changes(self, cursor: str | None) -> AsyncIterator[ChangePage]:
        if cursor is not None and not self._is_ours(cursor):
            # Written under another graph_api_url (or damaged): never follow it, start over here instead.
            raise CursorExpired(f"saved delta link is not under {self._api}")
        url = cursor or f"{self._drive_url}/root/delta"
        folders = _FolderPaths(self._folder)
        while True:
            body = await self._http.json("GET", url)
            raw = body.get("value") or []
            items = latest_occurrences(raw)
            folders.learn(items)
            next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            link = next_link or delta_link
            if not isinstance(link, str) or not self._is_ours(link):
                raise ProviderError(f"delta page without a usable link: {redacted(str(link))[:120]!r}", transient=False)
            # The docs: stop at the deltaLink, or at a page with no changes (its nextLink resumes later).
            final = next_link is None or not raw
            yield ChangePage(await self._changes_from(items, folders), link, final)
            if final:
                return
            url = link

    def _is_ours(self, link: str) -> bool:
        return link.startswith(f"{self._api}/")

    async def _changes_from(self, items: Sequence[Mapping[str, Any]], folders: _FolderPaths) -> list[ItemChange]:
        paths = {str(item["id"]): await self._path_of(item, folders) for item in items if "deleted" not in item}
        files = [str(item["id"]) for item in items if "file" in item and "deleted" not in item]
        grants = await self._permissions_of(files)
        return [
            change_from_item(
                item,
                drive_id=self._drive_id,
                source_uri=f"{self._drive_url}/items/{_segment(str(item['id']))}",
                path=paths.get(str(item["id"]), ""),
                permissions=grants.get(str(item["id"]), ()),
            )
            for item in items
        ]

    async def _path_of(self, item: Mapping[str, Any], folders: _FolderPaths) -> str:
        if is_root(item):
            return "/"
        return join_path(await folders.path_of(parent_id(item)), str(item.get("name", "")))

    async def _folder(self, folder_id: str) -> Mapping[str, Any] | None:
        try:
            url = f"{self._drive_url}/items/{_segment(folder_id)}"
            body: Mapping[str, Any] = await self._http.json(
                "GET", url, params={"$select": "id,name,root,parentReference"}
            )
            return body
        except ProviderError as exc:
            if exc.status in (403, 404):
                return None
            raise

    async def _permissions_of(self, item_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        found: dict[str, tuple[str, ...]] = {}
        slots = asyncio.Semaphore(PERMISSION_LOOKUPS_AT_ONCE)

        async def lookup(item_id: str) -> None:
            async with slots:
                found[item_id] = await self._permissions(item_id)

        # gather, not a TaskGroup: the caller gets the ProviderError itself, not an ExceptionGroup.
        lookups = [asyncio.ensure_future(lookup(item_id)) for item_id in item_ids]
        try:
            await asyncio.gather(*lookups)
        except BaseException:
            for pending in lookups:
                pending.cancel()
            await asyncio.gather(*lookups, return_exceptions=True)
            raise
        return found

    async def _permissions(self, item_id: str) -> tuple[str, ...]:
        try:
            body = await self._http.json("GET", f"{self._drive_url}/items/{_segment(item_id)}/permissions")
        except ProviderError as exc:
            if exc.status in (403, 404):  # gone meanwhile, or the app may not read sharing: no principals
                return ()
            raise
        return principals(body.get("value") or [])

    # --- notifications ---------------------------------------------------------------------------------
    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        return plan_from_notifications(payload, self._context.secrets["client_state"])

    # --- content ---------------------------------------------------------------------------------------
    async def download(self, item: ItemChange, directory: Path) -> Downloaded:
        drive = item.extra.get("drive_id") or self._drive_id
        url = f"{self._api}/drives/{_segment(drive)}/items/{_segment(item.item_id)}/content"
        downloaded = await self._http.download(url, directory)
        if not downloaded.content_type and item.content_type:
            downloaded = dataclasses.replace(downloaded, content_type=item.content_type)
        return downloaded

    # --- subscription ----------------------------------------------------------------------------------
    async def subscribe(self, existing: Subscription | None) -> Subscription | None:
        expires = _graph_time(self._clock() + SUBSCRIPTION_LIFETIME)
        if existing is not None:
            try:
                url = f"{self._api}/subscriptions/{_segment(existing.subscription_id)}"
                return self._subscription(await self._http.json("PATCH", url, json={"expirationDateTime": expires}))
            except ProviderError as exc:
                if exc.status != 404:
                    raise
                log.info("graph subscription gone; creating a new one", connector_id=self._context.connector_id)
        body = {
            "changeType": "updated",
            "notificationUrl": self._context.webhook_url,
            "lifecycleNotificationUrl": self._context.webhook_url,
            "resource": self._resource,
            "expirationDateTime": expires,
            "clientState": self._context.secrets["client_state"],
        }
        return self._subscription(await self._http.json("POST", f"{self._api}/subscriptions", json=body))

    def _subscription(self, body: Mapping[str, Any]) -> Subscription:
        return Subscription(
            str(body["id"]), parse_time(body.get("expirationDateTime")), str(body.get("resource") or self._resource)
        )

    async def unsubscribe(self, existing: Subscription) -> None:
        try:
            await self._http.request("DELETE", f"{self._api}/subscriptions/{_segment(existing.subscription_id)}")
        except ProviderError as exc:
            if exc.status != 404:  # already gone (expired or removed): nothing to do
                raise

    async def aclose(self) -> None:
        await self._http.aclose()


class _FolderPaths:
    """Folder id -> its path inside the drive, for one sync. Delta never sends `parentReference.path`, so a
    folder's path comes from the folders in the feed itself (name and parent id) and, for folders the feed does
    not carry, from one GET of the folder (whose own parentReference does carry the path)."""

    def __init__(self, fetch: Callable[[str], Awaitable[Mapping[str, Any] | None]]) -> None:
        self._fetch = fetch
        self._folders: dict[str, tuple[str, str]] = {}  # id -> (name, parent id)
        self._paths: dict[str, str] = {}

    def learn(self, items: Sequence[Mapping[str, Any]]) -> None:
        for item in items:
            item_id = str(item["id"])
            if "deleted" in item:
                continue
            if is_root(item):
                self._paths[item_id] = ""
            elif "folder" in item or "package" in item:
                self._folders[item_id] = (str(item.get("name", "")), parent_id(item))
                self._paths.pop(item_id, None)  # renamed or moved: rebuild it

    async def path_of(self, folder_id: str, depth: int = 0) -> str:
        if folder_id in self._paths:
            return self._paths[folder_id]
        if not folder_id or depth > MAX_FOLDER_DEPTH:
            return ""
        if folder_id in self._folders:
            name, parent = self._folders[folder_id]
            path = join_path(await self.path_of(parent, depth + 1), name)
        else:
            folder = await self._fetch(folder_id)
            if folder is None or is_root(folder):
                path = ""
            else:
                reference = str((folder.get("parentReference") or {}).get("path") or "")
                path = join_path(drive_path(reference), str(folder.get("name", "")))
        self._paths[folder_id] = path
        return path


def _graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build(
    context: ConnectorContext,
    endpoints: ProviderEndpoints,
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    return GraphProvider(context, endpoints, policy=policy, transport=transport)
