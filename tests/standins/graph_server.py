"""Stand-in for Microsoft Graph: one SharePoint document library (graph_drive.py), its change notification
subscriptions, and the Microsoft identity platform's token endpoint, speaking the published wire protocol.

Documentation followed (paths, JSON field names, headers and status codes):
- client credentials token: https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
  (POST /{tenant}/oauth2/v2.0/token; `invalid_client` 401, `invalid_scope` / `unsupported_grant_type` 400).
- delta: https://learn.microsoft.com/graph/api/driveitem-delta (GET /v1.0/drives/{id}/root/delta, `token` incl.
  `latest`, `$top`; pages linked by @odata.nextLink, the last with @odata.deltaLink; a stale token answers 410
  Gone, code `resyncChangesApplyDifferences`, with a Location header that starts a fresh enumeration).
- items and permissions: GET /v1.0/drives/{id}/items/{item-id} (and /root), .../permissions
  (https://learn.microsoft.com/graph/api/driveitem-get, .../api/driveitem-list-permissions).
- content: https://learn.microsoft.com/graph/api/driveitem-get-content: 302 to a pre-authenticated URL on the
  SharePoint host, valid a few minutes, to be fetched without Authorization (this stand-in answers 401 to one).
- subscriptions (POST/GET /v1.0/subscriptions, GET/PATCH/DELETE /v1.0/subscriptions/{id}), the validation
  handshake, change and lifecycle notifications: see graph_notifications.py for the pages followed.
- throttling: https://learn.microsoft.com/graph/throttling (429 `TooManyRequests`, or 503, with Retry-After).
Deviation: notification URLs may be plain http (the real service requires https), so tests need no TLS.

    with GraphStandin() as graph:                  # uvicorn on 127.0.0.1, a free port, background thread
        folder = graph.create_folder("Reports")
        doc = graph.create_file("q1.txt", "Revenue rose.", parent_id=folder)    # notifies subscribers
        graph.edit(doc, "Revenue fell."); graph.rename(doc, "q1-final.txt"); graph.delete(doc); graph.restore(doc)
        graph.throttle(2, retry_after=3); graph.expire_delta_tokens(); graph.expire_subscription()
        graph.refuse_downloads(5); graph.vanish(doc); graph.known_secrets()
        await graph.notify(client_state="forged"); await graph.lifecycle("reauthorizationRequired")
        await graph.settled()                      # the notifications changes triggered, once delivered
        graph.requests; graph.subscriptions.by_id / .validations / .deliveries
        graph.subscriptions.auto_notify = False    # changes notify nobody: a lost notification
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, urlencode

from standins.graph_drive import Content, Drive, DriveItem, Person, delta_token, iso, read_delta_token
from standins.graph_notifications import Delivery, Subscriptions, expiration_problem
from standins.server import Standin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
VALIDATION_FAILED = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class _Throttle:
    remaining: int
    retry_after: int | None
    status: int
    path_prefix: str


class GraphStandin(Standin):
    standin_name = "graph-standin"

    def __init__(
        self,
        *,
        tenant_id: str = "8f1c2d3e-0000-4000-8000-00000000c0de",
        client_id: str = "0a1b2c3d-0000-4000-8000-0000000a9900",
        client_secret: str = "standin~client~secret",
        drive_id: str = "b!standinDriveId_Engineering-Docs",
        site_url: str = "https://contoso.sharepoint.com/sites/Engineering",
        page_size: int = 200,
        download_host: str = "localhost",
        host: str = "127.0.0.1",
    ) -> None:
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.drive = Drive(drive_id, site_url)
        self.drive_id, self.root_id, self.page_size = drive_id, self.drive.root_id, page_size
        # Content redirects go to another host name (really the SharePoint host), so a client that keeps the
        # bearer for the Graph host only sends none there.
        self.download_host, self.host, self.port = download_host, host, 0
        self.requests: list[RecordedRequest] = []
        # .by_id, .validations, .deliveries; .auto_notify = False drops the notifications changes send
        self.subscriptions = Subscriptions(tenant_id, drive_id)
        self._lock = threading.RLock()
        self._tokens: set[str] = set()
        self._throttles: list[_Throttle] = []
        self._downloads: dict[str, tuple[DriveItem, Content, float]] = {}
        self._refusals = 0
        # Every access token and tempauth issued (see `known_secrets`).
        self._issued: list[str] = []

    @property
    def api_url(self) -> str:
        """For ProviderEndpoints.graph_api_url."""
        return f"{self.base_url}/v1.0"

    @property
    def login_url(self) -> str:
        """For ProviderEndpoints.microsoft_login_url."""
        return self.base_url

    def _start_helpers(self) -> None:
        self.subscriptions.start()

    def _stop_helpers(self) -> None:
        self.subscriptions.stop()

    # --- control: the drive (each change notifies the live subscriptions) ---------------------------------
    def create_folder(self, name: str, *, parent_id: str | None = None, author: Person | None = None) -> str:
        created = self.drive.create(name, "folder", parent_id, author, None, "")
        self.subscriptions.changed()
        return created

    def create_file(
        self,
        name: str,
        content: bytes | str | None = None,
        *,
        parent_id: str | None = None,
        size: int | None = None,
        mime_type: str = "text/plain",
        author: Person | None = None,
    ) -> str:
        """A file holding `content`, or `size` bytes of generated text (large files)."""
        created = self.drive.create(name, "file", parent_id, author, Content.of(content, size, name), mime_type)
        self.subscriptions.changed()
        return created

    def edit(self, item_id: str, content: bytes | str | None = None, *, size: int | None = None) -> None:
        self.drive.edit(item_id, content, size, None)
        self.subscriptions.changed()

    def rename(self, item_id: str, name: str) -> None:
        self.drive.rename(item_id, name)
        self.subscriptions.changed()

    def move(self, item_id: str, parent_id: str) -> None:
        self.drive.move(item_id, parent_id)
        self.subscriptions.changed()

    def delete(self, item_id: str) -> None:
        """To the recycle bin, with everything below it (each reported deleted)."""
        self.drive.delete(item_id)
        self.subscriptions.changed()

    def restore(self, item_id: str) -> None:
        """Back from the recycle bin under the same id, with its folders and contents."""
        self.drive.restore(item_id)
        self.subscriptions.changed()

    def share(self, item_id: str, email: str, *, role: str = "read") -> None:
        user = {"email": email, "id": str(uuid.uuid5(uuid.NAMESPACE_DNS, email)), "displayName": email}
        self.drive.grant(item_id, {"roles": [role], "grantedToV2": {"user": user}})
        self.subscriptions.changed()

    def share_link(self, item_id: str, *, scope: str = "organization") -> None:
        self.drive.grant(item_id, {"roles": ["read"], "link": {"scope": scope, "type": "view"}})
        self.subscriptions.changed()

    def sha256(self, item_id: str) -> str:
        content = self.drive.items[item_id].content
        assert content is not None, "not a file"
        return content.sha256

    # --- control: the service ----------------------------------------------------------------------------
    def throttle(
        self, count: int, *, retry_after: int | None = None, status: int = 429, path_prefix: str = "/v1.0/"
    ) -> None:
        """Answer the next `count` requests under `path_prefix` with `status` (429 or 503), with Retry-After
        when given. Content downloads live under "/_layouts/"."""
        with self._lock:
            self._throttles.append(_Throttle(count, retry_after, status, path_prefix))

    def refuse_downloads(self, count: int) -> None:
        """The next `count` content downloads (pre-authenticated URLs) answer 403 as an expired or revoked
        tempauth does; the error echoes the request URL, as storage hosts may, so a test can prove the link's
        credential never reaches our errors or logs."""
        with self._lock:
            self._refusals += count

    def vanish(self, item_id: str) -> None:
        """The item leaves the library without a change in the delta feed (as when the app loses access to
        it): nobody is notified, a saved delta token never reports it, only a full enumeration misses it."""
        with self.drive.lock:
            for item in [self.drive.items[item_id], *self.drive.descendants(item_id)]:
                del self.drive.items[item.id]

    def expire_delta_tokens(self) -> None:
        """Every delta token issued so far answers 410 Gone from now on."""
        with self.drive.lock:
            self.drive.epoch += 1

    def expire_subscription(self, subscription_id: str | None = None) -> None:
        """Let a subscription (default: all) lapse: Graph deletes it, so renewing it answers 404."""
        self.subscriptions.expire(subscription_id)

    def known_secrets(self) -> dict[str, str]:
        """Every credential the service knows or handed out, by a name for messages: the client secret, the
        subscriptions' clientState values, access tokens and tempauth values. Tests look for them where they
        must never be (logs, errors, audit entries)."""
        with self._lock:
            issued = list(self._issued)
        named = {f"clientState {n}": state for n, state in enumerate(sorted(self.subscriptions.client_states))}
        named.update({f"issued token or tempauth {n}": value for n, value in enumerate(issued)})
        return {"client_secret": self.client_secret, **named}

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    async def notify(self, subscription_id: str | None = None, *, client_state: str | None = None) -> list[Delivery]:
        """POST a change notification to live subscriptions now (`client_state` forges another one)."""
        return await self.subscriptions.notify(subscription_id, client_state=client_state)

    async def lifecycle(
        self, event: str, subscription_id: str | None = None, *, client_state: str | None = None
    ) -> list[Delivery]:
        """POST a lifecycle notification: reauthorizationRequired (change notifications pause until renewed),
        subscriptionRemoved (the subscription is deleted first) or missed."""
        return await self.subscriptions.lifecycle(event, subscription_id, client_state=client_state)

    async def settled(self, timeout_s: float = 15.0) -> list[Delivery]:
        """Wait until the notifications that changes triggered are delivered (or given up on); returns them."""
        return await self.subscriptions.settled(timeout_s)

    # --- HTTP ------------------------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        drive, item = "/v1.0/drives/{drive_id}", "/v1.0/drives/{drive_id}/items/{item_id}"
        return Starlette(
            routes=[
                Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
                Route(f"{drive}/root/delta", self._delta, methods=["GET"]),
                Route(f"{drive}/root", self._get_item, methods=["GET"]),
                Route(item, self._get_item, methods=["GET"]),
                Route(f"{item}/permissions", self._list_permissions, methods=["GET"]),
                Route(f"{item}/content", self._content, methods=["GET"]),
                Route("/_layouts/15/download.aspx", self._download, methods=["GET"]),
                Route("/v1.0/subscriptions", self._create_subscription, methods=["POST"]),
                Route("/v1.0/subscriptions", self._list_subscriptions, methods=["GET"]),
                Route("/v1.0/subscriptions/{sub_id}", self._one_subscription, methods=["GET", "PATCH", "DELETE"]),
            ]
        )

    async def _gate(self, request: Request, *, auth: bool = True) -> tuple[bytes, Response | None]:
        """Record the request; then throttling, then the bearer token, as the service checks them."""
        body = await request.body()
        query = dict(request.query_params)
        self.requests.append(RecordedRequest(request.method, request.url.path, query, dict(request.headers), body))
        with self._lock:
            rule = next((rule for rule in self._throttles if request.url.path.startswith(rule.path_prefix)), None)
            if rule is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._throttles.remove(rule)
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
                if rule.status == 429:
                    return body, _error(429, "TooManyRequests", "Please retry again later.", headers)
                return body, _error(rule.status, "serviceNotAvailable", "Service unavailable", headers)
            bearer = request.headers.get("authorization", "")
            if auth and not (bearer.startswith("Bearer ") and bearer.removeprefix("Bearer ") in self._tokens):
                message = "Access token validation failure." if bearer else "Access token is empty."
                return body, _error(401, "InvalidAuthenticationToken", message)
        return body, None

    async def _token(self, request: Request) -> Response:
        body, refused = await self._gate(request, auth=False)
        if refused:
            return refused
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if request.path_params["tenant"] != self.tenant_id:
            return _aad_error(400, "invalid_request", "AADSTS90002: Tenant not found.")
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant.")
        secret_ok = secrets.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode())
        if form.get("client_id") != self.client_id or not secret_ok:
            return _aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != GRAPH_SCOPE:
            return _aad_error(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens.add(token)
            self._issued.append(token)
        return JSONResponse({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    async def _delta(self, request: Request) -> Response:
        _, refused = await self._gate(request)
        if refused:
            return refused
        if request.path_params["drive_id"] != self.drive_id:
            return _error(404, "itemNotFound", "The resource could not be found.")
        link = f"{request.url.scheme}://{request.url.netloc}/v1.0/drives/{quote(self.drive_id, safe='!')}/root/delta"
        top = int(request.query_params.get("$top", self.page_size))
        raw = request.query_params.get("token")
        with self.drive.lock:
            current = {"e": self.drive.epoch, "p": self.drive.seq}
            if raw == "latest":
                return JSONResponse({"value": [], "@odata.deltaLink": f"{link}?token={delta_token(current)}"})
            state = read_delta_token(raw) if raw else {**current, "full": True, "start": self.drive.seq, "p": 0}
            if state is None:
                return _error(400, "invalidRequest", "Invalid or malformed delta token.")
            if state["e"] != self.drive.epoch:
                message = "Resync required. Replace any local items with the server's version (including deletes)."
                return _error(410, "resyncChangesApplyDifferences", message, {"Location": link})
            value, following = self.drive.delta_page(state, top)
        if following is not None:
            return JSONResponse({"value": value, "@odata.nextLink": f"{link}?token={delta_token(following)}"})
        return JSONResponse({"value": value, "@odata.deltaLink": f"{link}?token={delta_token(current)}"})

    async def _found(self, request: Request) -> DriveItem | Response:
        _, refused = await self._gate(request)
        if refused:
            return refused
        item = self.drive.items.get(request.path_params.get("item_id", self.root_id))
        if item is None or item.deleted or request.path_params["drive_id"] != self.drive_id:
            return _error(404, "itemNotFound", "The resource could not be found.")
        return item

    async def _get_item(self, request: Request) -> Response:
        found = await self._found(request)
        if isinstance(found, Response):
            return found
        with self.drive.lock:
            return JSONResponse(self.drive.render(found, delta=False))

    async def _list_permissions(self, request: Request) -> Response:
        found = await self._found(request)
        if isinstance(found, Response):
            return found
        with self.drive.lock:
            return JSONResponse({"value": self.drive.permissions(found)})

    async def _content(self, request: Request) -> Response:
        found = await self._found(request)
        if isinstance(found, Response):
            return found
        if found.content is None:
            return _error(404, "itemNotFound", "The item has no content.")
        tempauth = secrets.token_urlsafe(24)
        with self._lock:  # pre-authenticated and short-lived, for this version of the content
            self._downloads[tempauth] = (found, found.content, time.monotonic() + 300)
            self._issued.append(tempauth)
        query = urlencode({"UniqueId": found.guid, "tempauth": tempauth})
        location = f"http://{self.download_host}:{request.url.port}/_layouts/15/download.aspx?{query}"
        return Response(status_code=302, headers={"Location": location})

    async def _download(self, request: Request) -> Response:
        _, refused = await self._gate(request, auth=False)
        if refused:
            return refused
        if "authorization" in request.headers:
            return _error(401, "unauthorized", "Unexpected Authorization header on a pre-authenticated URL.")
        with self._lock:
            refused, self._refusals = self._refusals > 0, max(0, self._refusals - 1)
        if refused:
            return _error(403, "accessDenied", f"Access denied for {request.url}: the tempauth is not valid.")
        grant = self._downloads.get(request.query_params.get("tempauth", ""))
        if grant is None or grant[2] < time.monotonic() or grant[0].guid != request.query_params.get("UniqueId"):
            return _error(401, "unauthorized", "Invalid or expired tempauth.")
        item, content, _ = grant
        disposition = f"attachment; filename*=UTF-8''{quote(item.name)}"
        headers = {"Content-Length": str(content.size), "Content-Disposition": disposition}
        return StreamingResponse(content.pieces(), media_type=item.mime_type, headers=headers)

    async def _create_subscription(self, request: Request) -> Response:
        body, refused = await self._gate(request)
        if refused:
            return refused
        try:
            spec = json.loads(body)
        except ValueError:
            return _error(400, "BadRequest", "Unable to read JSON request payload.")
        problem = self.subscriptions.problem(spec) if isinstance(spec, dict) else "The body is not a JSON object."
        if problem:
            return _error(400, "InvalidRequest", problem)
        sub = await self.subscriptions.create(spec)
        if sub is None:
            return _error(400, "InvalidRequest", VALIDATION_FAILED)
        context = {"@odata.context": f"{self.api_url}/$metadata#subscriptions/$entity"}
        return JSONResponse({**context, **sub.json(self.client_id)}, status_code=201)

    async def _list_subscriptions(self, request: Request) -> Response:
        _, refused = await self._gate(request)
        if refused:
            return refused
        return JSONResponse({"value": [sub.json(self.client_id) for sub in self.subscriptions.live()]})

    async def _one_subscription(self, request: Request) -> Response:
        body, refused = await self._gate(request)
        if refused:
            return refused
        sub = next(iter(self.subscriptions.live(request.path_params["sub_id"])), None)
        if sub is None:
            return _error(404, "ResourceNotFound", "The object was not found.")
        if request.method == "DELETE":
            self.subscriptions.delete(sub)
            return Response(status_code=204)
        if request.method == "PATCH":
            expiration = json.loads(body or b"{}").get("expirationDateTime")
            problem = expiration_problem(expiration) if expiration else "expirationDateTime is required."
            if problem:
                return _error(400, "InvalidRequest", problem)
            self.subscriptions.renew(sub, expiration)
        return JSONResponse(sub.json(self.client_id))


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    inner = {"date": iso(datetime.now(UTC)), "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    return JSONResponse({"error": {"code": code, "message": message, "innerError": inner}}, status, headers=headers)


def _aad_error(status: int, error: str, description: str) -> JSONResponse:
    code = int(description.split(":")[0].removeprefix("AADSTS"))
    body = {"error": error, "error_description": description, "error_codes": [code], "trace_id": str(uuid.uuid4())}
    return JSONResponse(body, status)
