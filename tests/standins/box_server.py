"""Stand-in for the Box API (the real paths, JSON, headers and status codes; content held in memory).

    with BoxStandin(primary_key="k1", secondary_key="k2") as box:     # 127.0.0.1, a free port, its own thread
        folder = box.create_folder("Contracts")
        box.add_webhook(folder, address)                             # as in the developer console
        file_id = box.upload("a.txt", b"hello", folder)              # FILE.UPLOADED delivered, signed, to address
        await box.settled()                                          # every delivery attempt so far
        provider uses box.api_url / box.token_url (ProviderEndpoints.box_api_url / box_token_url)

Pages it follows:
- client credentials grant, POST /oauth2/token: https://developer.box.com/guides/authentication/client-credentials/
- files: https://developer.box.com/reference/get-files-id/ (with `fields=`), content
  https://developer.box.com/reference/get-files-id-content/ (302 to a pre-signed download URL on another host,
  here `download_host`; 202 with Retry-After while a file is not ready)
- the trash: https://developer.box.com/reference/get-files-id-trash/ and .../get-folders-id-trash/ (a trashed
  item with `parent`, where it was)
- folders: https://developer.box.com/reference/get-folders-id/, items https://developer.box.com/reference/
  get-folders-id-items/ (offset paging, or marker paging with `usemarker=true`,
  https://developer.box.com/guides/api-calls/pagination/marker-based/; limit at most 1000)
- events: https://developer.box.com/reference/get-events/ (`stream_position=now`, `next_stream_position`,
  `chunk_size`; limit at most 500) and https://developer.box.com/guides/events/parameters/pagination/
- webhooks v2: create https://developer.box.com/reference/post-webhooks/ (one webhook per item and app: 409;
  none on the root folder, https://developer.box.com/guides/webhooks/v2/limitations-v2/), list, get, update
  https://developer.box.com/reference/put-webhooks-id/, delete https://developer.box.com/reference/
  delete-webhooks-id/ (204); triggers https://developer.box.com/guides/webhooks/triggers/; payload
  https://developer.box.com/guides/webhooks/handle/payload/; signing and retries in box_webhooks.py
- errors and throttling: https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/ and
  .../rate-limits/ (429 `rate_limit_exceeded`, Retry-After)

One deliberate difference: Box accepts only HTTPS addresses on port 443 for webhooks; tests have no public TLS
endpoint, so that check runs only with `require_https=True`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from standins.box_model import ROOT_ID, BoxTree, BoxUser, Content, Item
from standins.box_routes import TRIGGERS, Webhook, box_error, routes
from standins.box_webhooks import DeliveryAttempt, WebhookSender
from standins.server import Standin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class BoxStandin(Standin):
    standin_name = "box-standin"

    def __init__(
        self,
        *,
        client_id: str = "boxclientid0standin",
        client_secret: str = "box-client-secret",
        enterprise_id: str = "900001",
        primary_key: str | None = "box-primary-key",
        secondary_key: str | None = "box-secondary-key",
        first_retry_s: float = 0.05,
        max_retries: int = 10,
        delivery_timeout_s: float = 30.0,
        require_https: bool = False,
        host: str = "127.0.0.1",
        download_host: str = "localhost",
    ) -> None:
        self.host, self.download_host, self.port = host, download_host, 0
        self.client_id, self.client_secret, self.enterprise_id = client_id, client_secret, enterprise_id
        self.require_https = require_https
        self.user = BoxUser()
        self.tree = BoxTree(self.user)
        self.sender = WebhookSender(
            primary_key,
            secondary_key,
            first_retry_s=first_retry_s,
            max_retries=max_retries,
            timeout_s=delivery_timeout_s,
        )
        self.webhooks: dict[str, Webhook] = {}
        self.requests: list[RecordedRequest] = []  # appended by the server thread
        self.token_requests = 0
        self._tokens: set[str] = set()
        self._issued: list[str] = []  # every access token and download link token (see known_secrets)
        self._downloads: dict[str, tuple[str, str, datetime]] = {}
        self._throttle: list[int | None] = []  # one entry per throttled request: its Retry-After or None
        self._not_ready: list[int] = []
        self._dropped = 0
        self._pending: list[concurrent.futures.Future[list[DeliveryAttempt]]] = []
        self._webhook_ids = iter(range(11_446_498, 10**9))

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.base_url}/2.0"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth2/token"

    def _start_helpers(self) -> None:
        self.sender.start()

    def _stop_helpers(self) -> None:
        self.sender.stop()

    # --- content changes (each records its user event and notifies matching webhooks) ----
    def create_folder(self, name: str, parent_id: str = ROOT_ID) -> str:
        return self._create("folder", name, parent_id, None, self.user)

    def upload(
        self, name: str, content: bytes | Content, folder_id: str = ROOT_ID, *, by: BoxUser | None = None
    ) -> str:
        body = content if isinstance(content, Content) else Content.of(content)
        return self._create("file", name, folder_id, body, by or self.user)

    def edit(self, file_id: str, content: bytes | Content, *, by: BoxUser | None = None) -> None:
        """Upload a new version (FILE.UPLOADED, ITEM_UPLOAD)."""
        body = content if isinstance(content, Content) else Content.of(content)
        self._change(file_id, "UPLOADED", lambda item, who: self.tree.new_version(item, body, who), by)

    def rename(self, item_id: str, name: str) -> None:
        def apply(item: Item, who: BoxUser) -> None:
            item.name = name
            self.tree.touch(item, who)
            self.tree.record("ITEM_RENAME", item, who)

        self._change(item_id, "RENAMED", apply)

    def move(self, item_id: str, folder_id: str) -> None:
        def apply(item: Item, who: BoxUser) -> None:
            item.parent_id = folder_id
            self.tree.touch(item, who)
            self.tree.record("ITEM_MOVE", item, who)

        self._change(item_id, "MOVED", apply)

    def trash(self, item_id: str) -> None:
        def apply(item: Item, who: BoxUser) -> None:
            item.status, item.trashed_at = "trashed", datetime.now(UTC)
            self.tree.touch(item, who)
            self.tree.record("ITEM_TRASH", item, who)

        self._change(item_id, "TRASHED", apply)

    def restore(self, item_id: str) -> None:
        def apply(item: Item, who: BoxUser) -> None:
            item.status, item.trashed_at = "active", None
            self.tree.touch(item, who)
            self.tree.record("ITEM_UNDELETE_VIA_TRASH", item, who)

        self._change(item_id, "RESTORED", apply)

    def delete(self, item_id: str) -> None:
        """Permanently delete (purge), from the trash or directly."""

        def apply(item: Item, who: BoxUser) -> None:
            if item.status == "active":
                self.tree.record("ITEM_TRASH", item, who)
            item.status = "deleted"

        self._change(item_id, "DELETED", apply)

    def share(self, file_id: str, access: str = "open") -> None:
        """Give the file a shared link (`open`, `company` or `collaborators`); no webhook trigger follows."""
        with self.tree.lock:
            self.tree.items[file_id].shared_access = access

    def _create(self, kind: str, name: str, parent_id: str, content: Content | None, by: BoxUser) -> str:
        with self.tree.lock:
            item = self.tree.new_item(kind, name, parent_id, by, content)
            bodies = self._payloads("FILE.UPLOADED" if kind == "file" else "FOLDER.CREATED", item, by, set())
        self._send_automatically(bodies)
        return item.id

    def _change(
        self, item_id: str, verb: str, apply: Callable[[Item, BoxUser], None], by: BoxUser | None = None
    ) -> None:
        who = by or self.user
        with self.tree.lock:
            item = self.tree.items[item_id]
            trigger = f"{item.type.upper()}.{verb}"
            watching_before = {hook.id for hook in self._watching(item, trigger)}
            apply(item, who)
            bodies = self._payloads(trigger, item, who, watching_before)
        self._send_automatically(bodies)

    # --- webhooks and deliveries -----------------------------------------------------------
    def add_webhook(
        self, target_id: str, address: str, triggers: list[str] | None = None, target_type: str = "folder"
    ) -> str:
        """Create a webhook as an admin would in the developer console."""
        hook = Webhook(str(next(self._webhook_ids)), target_type, target_id, address, triggers or sorted(TRIGGERS))
        with self.tree.lock:
            self.webhooks[hook.id] = hook
        return hook.id

    def set_signature_keys(self, primary: str | None, secondary: str | None) -> None:
        """Rotate the app's signature keys (None: that key is not configured, its header is not sent)."""
        self.sender.primary_key, self.sender.secondary_key = primary, secondary

    def drop_deliveries(self, count: int) -> None:
        """Lose the next `count` automatic notifications (never sent): only the event stream will show them."""
        self._dropped += count

    def deliver(
        self,
        trigger: str,
        item_id: str,
        address: str | None = None,
        *,
        stale_by: timedelta | None = None,
        forged: bool = False,
        retries: bool | None = None,
    ) -> concurrent.futures.Future[list[DeliveryAttempt]]:
        """Send one notification about the item's current state now, to `address` or else to the webhook watching
        the item. `stale_by` back-dates its timestamp, `forged` signs with wrong keys; those two are not retried
        unless `retries` says so."""
        with self.tree.lock:
            item = self.tree.items[item_id]
            hook = next(iter(self._watching(item, trigger)), None)
            if address is None:
                if hook is None:
                    raise ValueError(f"no webhook watches {item_id} for {trigger}: give an address")
                address = hook.address
            body = self._payload(trigger, item, self.user, hook.id if hook else "0")
        retry = retries if retries is not None else not (forged or stale_by)
        return self.sender.submit(self.sender.deliver(address, body, stale_by=stale_by, forged=forged, retries=retry))

    def replay(self, attempt: DeliveryAttempt) -> concurrent.futures.Future[DeliveryAttempt]:
        """Send a recorded request again, byte for byte (same BOX-DELIVERY-ID and signatures): an attacker's replay."""
        return self.sender.submit(self.sender.post(attempt.address, attempt.headers, attempt.body))

    def redeliver(self, attempt: DeliveryAttempt) -> concurrent.futures.Future[list[DeliveryAttempt]]:
        """Send a delivered body again as Box retries it (new BOX-DELIVERY-ID, fresh timestamp and signatures, the
        same body `id`), as when our 2xx answer was lost on the way back."""
        return self.sender.submit(self.sender.deliver(attempt.address, attempt.body, retries=False))

    @property
    def attempts(self) -> list[DeliveryAttempt]:
        return list(self.sender.attempts)

    async def settled(self, timeout_s: float = 10.0) -> list[DeliveryAttempt]:
        """Wait for every automatic delivery so far (retries included); their attempts, in order sent."""
        pending, self._pending = self._pending, []
        done = await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in pending)), timeout_s)
        return [attempt for attempts in done for attempt in attempts]

    def _watching(self, item: Item, trigger: str) -> list[Webhook]:
        """Webhooks on the item or on a folder above it (webhooks cascade to sub-folders) that listen for it."""
        above = {folder.id for folder in self.tree.ancestors(item)}

        def covers(hook: Webhook) -> bool:
            on_item = (hook.target_type, hook.target_id) == (item.type, item.id)
            return on_item or (hook.target_type == "folder" and hook.target_id in above)

        return [hook for hook in self.webhooks.values() if trigger in hook.triggers and covers(hook)]

    def _payloads(self, trigger: str, item: Item, by: BoxUser, before: set[str]) -> list[tuple[str, bytes]]:
        hooks = {hook.id: hook for hook in self._watching(item, trigger)}
        hooks.update({hook_id: self.webhooks[hook_id] for hook_id in before if hook_id in self.webhooks})
        return [(hook.address, self._payload(trigger, item, by, hook.id)) for hook in hooks.values()]

    def _payload(self, trigger: str, item: Item, by: BoxUser, webhook_id: str) -> bytes:
        event = {
            "type": "webhook_event",
            "id": str(uuid.uuid4()),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "trigger": trigger,
            "webhook": {"id": webhook_id, "type": "webhook"},
            "created_by": by.mini(),
            "source": self.tree.render(item),
            "additional_info": [],
        }
        return json.dumps(event).encode()

    def _send_automatically(self, bodies: list[tuple[str, bytes]]) -> None:
        for address, body in bodies:
            if self._dropped:
                self._dropped -= 1
                continue
            self._pending.append(self.sender.submit(self.sender.deliver(address, body, retries=True)))

    # --- faults ----------------------------------------------------------------------------
    def throttle(self, count: int, retry_after: int | None = None) -> None:
        """Answer the next `count` API requests 429, with `Retry-After: <retry_after>` when given."""
        self._throttle.extend([retry_after] * count)

    def content_not_ready(self, count: int, retry_after: int = 1) -> None:
        """Answer the next `count` content requests 202 with Retry-After (a file Box is still processing)."""
        self._not_ready.extend([retry_after] * count)

    def expire_tokens(self) -> None:
        """Revoke every access token issued so far: the next API call gets 401."""
        self._tokens.clear()

    # --- HTTP ------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(routes=routes(self))

    def record(self, request: Request) -> None:
        self.requests.append(
            RecordedRequest(
                request.method,
                request.url.hostname or "",
                request.url.path,
                dict(request.query_params),
                dict(request.headers),
            )
        )

    def guard(self, request: Request) -> Response | None:
        """What every API call meets first: the rate limit, then the bearer token."""
        self.record(request)
        if self._throttle:
            retry_after = self._throttle.pop(0)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return box_error(429, "rate_limit_exceeded", "Request rate limit exceeded, please try again later", headers)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or token not in self._tokens:
            challenge = (
                'Bearer realm="Service", error="invalid_token", '
                'error_description="The access token provided is invalid."'
            )
            return Response(status_code=401, headers={"WWW-Authenticate": challenge})
        return None

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        self._issued.append(token)
        return token

    def known_secrets(self) -> dict[str, str]:
        """Every credential the service knows or handed out, by a name for messages: the client secret, both
        signature keys, access tokens and the tokens in pre-signed download links. Tests look for them where
        they must never be (logs, errors, audit entries)."""
        named = {"client_secret": self.client_secret}
        named |= {
            "primary signature key": self.sender.primary_key or "",
            "secondary signature key": self.sender.secondary_key or "",
        }
        named |= {f"issued token {n}": token for n, token in enumerate(list(self._issued))}
        return {name: value for name, value in named.items() if value}

    def download_url(self, item: Item, version_id: str) -> str:
        token = secrets.token_urlsafe(24)
        self._issued.append(token)
        self._downloads[token] = (item.id, version_id, datetime.now(UTC) + timedelta(minutes=15))
        return f"http://{self.download_host}:{self.port}/d/1/{token}/download"

    def resolve_download(self, token: str) -> Content | None:
        found = self._downloads.get(token)
        if found is None or found[2] < datetime.now(UTC):
            return None
        item = self.tree.items[found[0]]
        return next((v.content for v in item.versions if v.id == found[1]), None)

    def next_not_ready(self) -> int | None:
        return self._not_ready.pop(0) if self._not_ready else None

    def new_webhook_id(self) -> str:
        return str(next(self._webhook_ids))

    def address_allowed(self, address: str) -> bool:
        parts = urlsplit(address)
        if not parts.scheme or not parts.hostname:
            return False
        return not self.require_https or (parts.scheme == "https" and (parts.port or 443) == 443)
