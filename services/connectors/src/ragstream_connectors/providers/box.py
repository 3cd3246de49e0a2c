"""Box: webhooks v2 name the file that changed, the user event stream repairs what webhooks miss.

- Authentication: client credentials grant (https://developer.box.com/guides/authentication/client-credentials/)
  as the enterprise's service account or a user (`box_subject_type`/`box_subject_id`).
- Notifications: a v2 webhook on the synced folder (https://developer.box.com/guides/webhooks/v2/); the
  gateway verifies its signatures. A file trigger is answered with the file's state now
  (https://developer.box.com/reference/get-files-id/), whatever the trigger said: Box retries failed deliveries
  for hours and out of order, so a late `FILE.TRASHED` must not delete a file that was restored since.
- Full enumeration: the folder tree, page by page (https://developer.box.com/reference/get-folders-id-items/,
  marker paging), after taking the event stream position (`stream_position=now`,
  https://developer.box.com/reference/get-events/) so nothing done during the walk is missed.
- Incremental sync: `GET /events?stream_type=changes` from the saved position. A folder that was moved,
  renamed or restored has its tree listed again (paths changed, files came back); one that was trashed can no
  longer be listed, so CursorExpired asks for a full enumeration, whose sweep removes its files.
- Content: `GET /files/{id}/content?version=` answers 302 to a pre-signed download URL, fetched without the
  bearer token (https://developer.box.com/reference/get-files-id-content/).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

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
from ragstream_connectors.providers.box_items import (
    FILE_FIELDS,
    FILE_TRIGGERS,
    FOLDER_EVENTS,
    FOLDER_FIELDS,
    FOLDER_TRIGGERS,
    ROOT_FOLDER_ID,
    WEBHOOK_TRIGGERS,
    EventsCursor,
    WalkCursor,
    decode_cursor,
    deleted_item,
    encode_cursor,
    in_scope,
    item_from_file,
    webhook_event,
)
from ragstream_connectors.providers.endpoints import ProviderEndpoints
from ragstream_connectors.providers.http import OAuthToken, ProviderHttp, RetryPolicy

# Box keeps user events "between two weeks and two months": trust a stream position for the lower bound only.
EVENT_RETENTION = timedelta(days=14)
SUBJECT_TYPES = frozenset({"enterprise", "user"})


class BoxProvider:
    def __init__(
        self,
        context: ConnectorContext,
        endpoints: ProviderEndpoints,
        http: ProviderHttp,
        *,
        page_size: int = 1000,
        events_page_size: int = 500,
        lookups_at_once: int = 4,
        retention: timedelta = EVENT_RETENTION,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = endpoints.box_api_url.rstrip("/")
        self._http = http
        self._folder_id = str(context.config.get("folder_id") or ROOT_FOLDER_ID)
        self._webhook_url = context.webhook_url
        self._manages_webhook = str(context.config.get("manage_webhook", False)).lower() == "true"
        self._page_size = page_size
        self._events_page_size = events_page_size
        self._lookups = asyncio.Semaphore(lookups_at_once)
        self._retention = retention
        self._now = now

    # --- changes ---------------------------------------------------------------------------
    async def changes(self, cursor: str | None) -> AsyncIterator[ChangePage]:
        if cursor is None:
            walk = WalkCursor(await self._stream_now(), (self._folder_id,))
            async for page in self._walk(walk):
                yield page
            return
        saved = decode_cursor(cursor, now=self._now(), retention=self._retention)
        pages = self._walk(saved) if isinstance(saved, WalkCursor) else self._events(saved)
        async for page in pages:
            yield page

    async def _stream_now(self) -> EventsCursor:
        taken_at = self._now()
        body = await self._http.json(
            "GET", f"{self._api}/events", params={"stream_type": "changes", "stream_position": "now"}
        )
        return EventsCursor(str(body["next_stream_position"]), taken_at)

    async def _walk(self, walk: WalkCursor) -> AsyncIterator[ChangePage]:
        """List the pending folders page by page; each page's cursor resumes right after it."""
        while walk.pending:
            folder = walk.pending[0]
            try:
                entries, next_marker = await self._folder_page(folder, walk.marker)
            except ProviderError as exc:
                if exc.status == 404 and folder != self._folder_id and walk.marker is None:
                    walk = replace(walk, pending=walk.pending[1:])  # trashed since it was found: nothing to list
                    continue
                if exc.status in (400, 404) and walk.marker is not None:
                    raise CursorExpired(f"Box folder {folder}: marker no longer valid") from exc
                raise
            files = [
                item_from_file(e, api_url=self._api, folder_id=self._folder_id)
                for e in entries
                if e.get("type") == "file"
            ]
            found = tuple(str(entry["id"]) for entry in entries if entry.get("type") == "folder")
            pending = (*walk.pending, *found) if next_marker else (*walk.pending[1:], *found)
            walk = replace(walk, pending=pending, marker=next_marker)
            yield ChangePage(files, encode_cursor(walk), final=False)
        yield ChangePage([], encode_cursor(walk.start), final=True)

    async def _folder_page(self, folder: str, marker: str | None) -> tuple[list[dict[str, Any]], str | None]:
        params = {"fields": FILE_FIELDS, "usemarker": "true", "limit": str(self._page_size)}
        if marker:
            params["marker"] = marker
        body = await self._http.json("GET", f"{self._api}/folders/{folder}/items", params=params)
        return list(body.get("entries") or []), body.get("next_marker") or None

    async def _events(self, cursor: EventsCursor) -> AsyncIterator[ChangePage]:
        """Event pages until Box has no more; every position is a cursor to save, the last one is final."""
        position = cursor.stream_position
        while True:
            taken_at = self._now()
            params = {"stream_type": "changes", "stream_position": position, "limit": str(self._events_page_size)}
            body = await self._http.json("GET", f"{self._api}/events", params=params)
            entries = list(body.get("entries") or [])
            next_position = str(body.get("next_stream_position") or position)
            final = not entries or next_position == position
            changes = await self._changes_for(entries) if entries else []
            position = next_position
            yield ChangePage(changes, encode_cursor(EventsCursor(position, taken_at)), final=final)
            if final:
                return

    async def _changes_for(self, events: list[dict[str, Any]]) -> list[ItemChange]:
        """One page of events as current item states. Box may repeat events or send them out of order, so each
        touched file is looked up once, after every folder in the page: the state now is what counts."""
        files: dict[str, None] = {}
        folders: dict[str, str] = {}
        for event in events:
            source = event.get("source") or {}
            source_id = str(source.get("id") or "")
            if source.get("type") == "file" and source_id:
                files.pop(source_id, None)
                files[source_id] = None
            elif source.get("type") == "folder" and source_id and event.get("event_type") in FOLDER_EVENTS:
                folders[source_id] = str(event["event_type"])
        changes: list[ItemChange] = []
        for folder, event_type in folders.items():
            changes += await self._folder_changed(folder, event_type)
        async with asyncio.TaskGroup() as lookups:  # a failed lookup cancels the rest
            found = [lookups.create_task(self._current_file(file_id)) for file_id in files]
        return changes + [task.result() for task in found]

    async def _folder_changed(self, folder: str, event_type: str) -> list[ItemChange]:
        current = await self._folder(folder)
        if current is None:
            if await self._was_in_scope(folder):
                raise CursorExpired(f"Box folder {folder} was trashed: its files are known only by a full sync")
            return []
        if in_scope(current, self._folder_id):
            return await self._tree_files(folder)
        if event_type == "ITEM_MOVE":  # moved out of the synced tree: its files are gone from our view
            return [deleted_item(item.item_id, self._api) for item in await self._tree_files(folder)]
        return []

    async def _folder(self, folder: str) -> dict[str, Any] | None:
        """The folder if it is live (None: in the trash, inside a trashed folder, or deleted)."""
        try:
            current = await self._http.json("GET", f"{self._api}/folders/{folder}", params={"fields": FOLDER_FIELDS})
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(current) if current.get("item_status", "active") == "active" else None

    async def _was_in_scope(self, folder: str) -> bool:
        """Whether a trashed folder was in the synced tree: its `parent` in the trash is where it was
        (https://developer.box.com/reference/get-folders-id-trash/). Unknown counts as yes."""
        if self._folder_id in (ROOT_FOLDER_ID, folder):
            return True
        try:
            trashed = await self._http.json("GET", f"{self._api}/folders/{folder}/trash", params={"fields": "parent"})
        except ProviderError as exc:
            if exc.status == 404:  # purged, or inside a trashed folder: where it was is unknown
                return True
            raise
        parent = str((trashed.get("parent") or {}).get("id") or "")
        if parent in ("", self._folder_id):
            return True
        above = await self._folder(parent)
        return above is None or in_scope(above, self._folder_id)

    async def _tree_files(self, folder: str) -> list[ItemChange]:
        files: list[ItemChange] = []
        async for page in self._walk(WalkCursor(EventsCursor("", self._now()), (folder,))):
            files += page.changes
        return files

    async def _current_file(self, file_id: str) -> ItemChange:
        async with self._lookups:
            try:
                body = await self._http.json("GET", f"{self._api}/files/{file_id}", params={"fields": FILE_FIELDS})
            except ProviderError as exc:
                if exc.status == 404:  # `trashed` or `not_found`: either way no longer ours to index
                    return deleted_item(file_id, self._api)
                raise
        return self._item(body)

    def _item(self, file: dict[str, Any]) -> ItemChange:
        return item_from_file(file, api_url=self._api, folder_id=self._folder_id)

    # --- notifications ---------------------------------------------------------------------
    async def plan(self, payload: bytes, attributes: Mapping[str, str]) -> NotificationPlan:
        event = webhook_event(payload)
        trigger = str(event.get("trigger", ""))
        source: dict[str, Any] = event["source"] if isinstance(event.get("source"), dict) else {}
        if trigger == "WEBHOOK.DELETED":
            return NotificationPlan(resubscribe=True) if self._manages_webhook else NotificationPlan(sync=True)
        if trigger in FOLDER_TRIGGERS:
            return NotificationPlan(sync=True)
        if trigger in FILE_TRIGGERS and source.get("type") == "file" and source.get("id"):
            return NotificationPlan(items=[await self._current_file(str(source["id"]))])
        return NotificationPlan()

    # --- content ---------------------------------------------------------------------------
    async def download(self, item: ItemChange, directory: Path) -> Downloaded:
        """The version the change named (`?version=`), so content and version tag always agree. A body of another
        size than Box listed (a 202 "not ready yet" answer has none) is never handed on: retried later."""
        version = item.extra.get("file_version")
        url = httpx.URL(f"{self._api}/files/{item.item_id}/content", params={"version": version} if version else {})
        downloaded = await self._http.download(str(url), directory)
        if item.size_bytes is not None and downloaded.size_bytes != item.size_bytes:
            await asyncio.to_thread(downloaded.path.unlink, True)
            message = f"Box file {item.item_id}: got {downloaded.size_bytes} bytes of {item.size_bytes}"
            raise ProviderError(message, transient=True)
        return downloaded

    # --- webhook ---------------------------------------------------------------------------
    async def subscribe(self, existing: Subscription | None) -> Subscription | None:
        """A webhook on the synced folder when the connector manages it (`manage_webhook`); Box webhooks do not
        expire, so an existing one is kept while Box still has it."""
        if not self._manages_webhook:
            return None
        if self._folder_id == ROOT_FOLDER_ID:
            raise ProviderError("Box v2 webhooks cannot watch the root folder: set config folder_id", transient=False)
        wanted = {"address": self._webhook_url, "triggers": list(WEBHOOK_TRIGGERS)}
        current = await self._webhook(existing.subscription_id) if existing is not None else None
        if existing is not None and current is not None:
            if current.get("address") != self._webhook_url or set(WEBHOOK_TRIGGERS) - set(current.get("triggers", [])):
                await self._http.request("PUT", f"{self._api}/webhooks/{existing.subscription_id}", json=wanted)
            return existing
        try:
            body = await self._http.json(
                "POST", f"{self._api}/webhooks", json={"target": {"id": self._folder_id, "type": "folder"}, **wanted}
            )
        except ProviderError as exc:
            if exc.status != 409:  # one webhook per item and app: ours from an interrupted attempt, or stale
                raise
            body = await self._http.json("PUT", f"{self._api}/webhooks/{await self._webhook_on_folder()}", json=wanted)
        return Subscription(str(body["id"]), None, resource=f"folder:{self._folder_id}")

    async def _webhook(self, webhook_id: str) -> dict[str, Any] | None:
        try:
            return dict(await self._http.json("GET", f"{self._api}/webhooks/{webhook_id}"))
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise

    async def _webhook_on_folder(self) -> str:
        params: dict[str, str] = {"limit": "1000"}
        while True:
            body = await self._http.json("GET", f"{self._api}/webhooks", params=params)
            for webhook in body.get("entries") or []:
                target = webhook.get("target") or {}
                if target.get("type") == "folder" and str(target.get("id")) == self._folder_id:
                    return str(webhook["id"])
            if not body.get("next_marker"):
                raise ProviderError(f"Box answered 409 but lists no webhook on {self._folder_id}", transient=False)
            params["marker"] = str(body["next_marker"])

    async def unsubscribe(self, existing: Subscription) -> None:
        try:
            await self._http.request("DELETE", f"{self._api}/webhooks/{existing.subscription_id}")
        except ProviderError as exc:
            if exc.status != 404:  # already gone is what we wanted
                raise

    async def aclose(self) -> None:
        await self._http.aclose()


def _required(values: Mapping[str, Any], key: str, where: str) -> str:
    value = str(values.get(key) or "")
    if not value:
        raise ProviderError(f"Box connector {where} lacks {key!r}", transient=False)
    return value


def client_credentials(context: ConnectorContext, endpoints: ProviderEndpoints) -> OAuthToken:
    """The connector's token: client credentials grant as the enterprise service account or one user."""
    subject_type = _required(context.config, "subject_type", "config")
    if subject_type not in SUBJECT_TYPES:
        raise ProviderError(f"Box subject_type must be one of {sorted(SUBJECT_TYPES)}", transient=False)
    form = {
        "grant_type": "client_credentials",
        "client_id": _required(context.config, "client_id", "config"),
        "client_secret": _required(context.secrets, "client_secret", "secrets"),
        "box_subject_type": subject_type,
        "box_subject_id": _required(context.config, "subject_id", "config"),
    }
    return OAuthToken(endpoints.box_token_url, form)


def build(
    context: ConnectorContext,
    endpoints: ProviderEndpoints,
    *,
    policy: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    http = ProviderHttp("box", client_credentials(context, endpoints), policy=policy, transport=transport)
    return BoxProvider(context, endpoints, http)
