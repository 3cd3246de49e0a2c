"""The Box stand-in's HTTP routes (box_server.py has the pages they follow and the control surface)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from standins.box_model import ROOT_ID, BoxUser, Item
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from standins.box_server import BoxStandin

# https://developer.box.com/guides/webhooks/triggers/ (the file and folder ones, and WEBHOOK.DELETED)
FILE_VERBS = "UPLOADED PREVIEWED DOWNLOADED TRASHED DELETED RESTORED COPIED MOVED LOCKED UNLOCKED RENAMED"
FOLDER_VERBS = "CREATED RENAMED DOWNLOADED RESTORED DELETED COPIED MOVED TRASHED"
TRIGGERS = frozenset(
    [
        *(f"FILE.{verb}" for verb in FILE_VERBS.split()),
        *(f"FOLDER.{verb}" for verb in FOLDER_VERBS.split()),
        "WEBHOOK.DELETED",
    ]
)
HELP_URL = "https://developer.box.com/guides/api-calls/permissions-and-errors/common-errors/"


@dataclass
class Webhook:
    id: str
    target_type: str
    target_id: str
    address: str
    triggers: list[str]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def render(self, created_by: BoxUser) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "webhook",
            "target": {"id": self.target_id, "type": self.target_type},
            "created_by": created_by.mini(),
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "address": self.address,
            "triggers": list(self.triggers),
        }


def box_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {
        "type": "error",
        "status": status,
        "code": code,
        "help_url": HELP_URL,
        "message": message,
        "request_id": uuid.uuid4().hex[:12],
    }
    return JSONResponse(body, status_code=status, headers=headers)


def encode_marker(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_marker(marker: str) -> int:
    text = base64.urlsafe_b64decode(marker.encode()).decode()
    kind, _, offset = text.partition(":")
    if kind != "offset":
        raise ValueError(marker)
    return int(offset)


Handler = Callable[[Request], Awaitable[Response]]
SUBJECT_TYPES = ("enterprise", "user")
STREAM_TYPES = ("all", "changes", "sync")


def routes(box: BoxStandin) -> list[Route]:
    def api(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            refused = box.guard(request)
            return refused if refused is not None else await handler(request)

        return guarded

    def fields_of(request: Request) -> list[str] | None:
        value = request.query_params.get("fields")
        return [name.strip() for name in value.split(",") if name.strip()] if value else None

    def find(kind: str, item_id: str) -> Item | Response:
        """The live item, or 404 `not_found` (never existed, purged) or 404 `trashed` (in the trash)."""
        item = box.tree.get(item_id, kind)
        if item is None or box.tree.status(item) == "deleted":
            return box_error(404, "not_found", "Not Found")
        if box.tree.status(item) == "trashed":
            return box_error(404, "trashed", "Item is trashed")
        return item

    def limit_of(request: Request, default: int, maximum: int) -> int:
        return max(1, min(maximum, int(request.query_params.get("limit", default))))

    async def token(request: Request) -> Response:
        box.record(request)
        box.token_requests += 1
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Grant type not supported"}, 400
            )
        if (form.get("client_id"), form.get("client_secret")) != (box.client_id, box.client_secret):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "The client credentials are invalid"}, 400
            )
        subject_type, subject_id = form.get("box_subject_type"), form.get("box_subject_id")
        if (
            subject_type not in SUBJECT_TYPES
            or not subject_id
            or (subject_type == "enterprise" and subject_id != box.enterprise_id)
        ):
            return JSONResponse({"error": "invalid_grant", "error_description": "Grant credentials are invalid"}, 400)
        return JSONResponse(
            {
                "access_token": box.issue_token(),
                "expires_in": 3600,
                "restricted_to": [],
                "token_type": "bearer",
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            }
        )

    def get_item(kind: str) -> Handler:
        async def get(request: Request) -> Response:
            with box.tree.lock:
                item = find(kind, request.path_params["item_id"])
                return item if isinstance(item, Response) else JSONResponse(box.tree.render(item, fields_of(request)))

        return get

    def get_trashed(kind: str) -> Handler:
        """An item that is itself in the trash (not one inside a trashed folder); 404 `not_found` otherwise."""

        async def get(request: Request) -> Response:
            with box.tree.lock:
                item = box.tree.get(request.path_params["item_id"], kind)
                if item is None or item.status != "trashed":
                    return box_error(404, "not_found", "Not Found")
                return JSONResponse(box.tree.render(item, fields_of(request)))

        return get

    async def folder_items(request: Request) -> Response:
        params = request.query_params
        with box.tree.lock:
            folder = find("folder", request.path_params["folder_id"])
            if isinstance(folder, Response):
                return folder
            fields = fields_of(request)
            children = box.tree.children(folder.id)
            limit = limit_of(request, 100, 1000)
            render = (lambda item: box.tree.render(item, fields)) if fields else box.tree.mini
            if params.get("usemarker") == "true":
                try:
                    start = decode_marker(params["marker"]) if params.get("marker") else 0
                except ValueError:
                    return box_error(400, "bad_request", "Invalid marker")
                page = [render(item) for item in children[start : start + limit]]
                more = start + limit < len(children)
                return JSONResponse(
                    {"entries": page, "limit": limit, "next_marker": encode_marker(start + limit) if more else None}
                )
            offset = int(params.get("offset", 0))
            page = [render(item) for item in children[offset : offset + limit]]
            order = [{"by": "type", "direction": "ASC"}, {"by": "name", "direction": "ASC"}]
            return JSONResponse(
                {"total_count": len(children), "entries": page, "offset": offset, "limit": limit, "order": order}
            )

    async def file_content(request: Request) -> Response:
        with box.tree.lock:
            item = find("file", request.path_params["file_id"])
            if isinstance(item, Response):
                return item
            wanted = request.query_params.get("version") or item.versions[-1].id
            if wanted not in {version.id for version in item.versions}:
                return box_error(404, "not_found", "Not Found")
            not_ready = box.next_not_ready()
            if not_ready is not None:
                return Response(status_code=202, headers={"Retry-After": str(not_ready)})
            return RedirectResponse(box.download_url(item, wanted), status_code=302)

    async def download(request: Request) -> Response:
        box.record(request)
        content = box.resolve_download(request.path_params["token"])
        if content is None:
            return Response(status_code=404)
        headers = {"Content-Length": str(content.size), "Content-Disposition": "attachment"}
        return StreamingResponse(content.pieces(), media_type="application/octet-stream", headers=headers)

    async def events(request: Request) -> Response:
        params = request.query_params
        if params.get("stream_type", "all") not in STREAM_TYPES:
            return box_error(400, "bad_request", "Invalid stream_type")
        try:
            entries, position = box.tree.events_from(params.get("stream_position"), limit_of(request, 100, 500))
        except ValueError:
            return box_error(400, "bad_request", "Invalid stream_position")
        return JSONResponse({"chunk_size": len(entries), "next_stream_position": position, "entries": entries})

    def webhook_problem(body: dict[str, Any], *, creating: bool) -> Response | None:
        target = body.get("target") or {}
        if creating or "target" in body:
            if target.get("type") not in ("file", "folder"):
                return box_error(400, "bad_request", "target.type must be file or folder")
            if target.get("type") == "folder" and str(target.get("id")) == ROOT_ID:
                return box_error(400, "bad_request", "Webhooks cannot be created on the root folder")
            found = find(str(target.get("type")), str(target.get("id")))
            if isinstance(found, Response):
                return found
        triggers = body.get("triggers")
        if (creating or triggers is not None) and (not triggers or not set(triggers) <= TRIGGERS):
            return box_error(400, "bad_request", "triggers must be a non-empty list of webhook triggers")
        address = body.get("address")
        if (creating or address is not None) and not box.address_allowed(str(address or "")):
            return box_error(400, "bad_request", "address must be an HTTPS URL on port 443")
        return None

    async def create_webhook(request: Request) -> Response:
        body = await request.json()
        with box.tree.lock:
            refused = webhook_problem(body, creating=True)
            if refused is not None:
                return refused
            target = (str(body["target"]["type"]), str(body["target"]["id"]))
            if any((hook.target_type, hook.target_id) == target for hook in box.webhooks.values()):
                return box_error(409, "conflict", "Webhook already exists on the specified target.")
            hook = Webhook(box.new_webhook_id(), *target, str(body["address"]), list(body["triggers"]))
            box.webhooks[hook.id] = hook
            return JSONResponse(hook.render(box.user), status_code=201)

    async def list_webhooks(request: Request) -> Response:
        with box.tree.lock:
            hooks = sorted(box.webhooks.values(), key=lambda hook: int(hook.id))
        limit = limit_of(request, 100, 200)
        try:
            start = decode_marker(request.query_params["marker"]) if request.query_params.get("marker") else 0
        except ValueError:
            return box_error(400, "bad_request", "Invalid marker")
        page = [
            {"id": h.id, "type": "webhook", "target": {"id": h.target_id, "type": h.target_type}}
            for h in hooks[start : start + limit]
        ]
        more = start + limit < len(hooks)
        return JSONResponse(
            {"entries": page, "limit": limit, "next_marker": encode_marker(start + limit) if more else None}
        )

    async def one_webhook(request: Request) -> Response:
        body = await request.json() if request.method == "PUT" else {}
        with box.tree.lock:
            hook = box.webhooks.get(request.path_params["webhook_id"])
            if hook is None:
                return box_error(404, "not_found", "Not Found")
            if request.method == "DELETE":
                del box.webhooks[hook.id]
                return Response(status_code=204)
            if request.method == "PUT":
                refused = webhook_problem(body, creating=False)
                if refused is not None:
                    return refused
                if "target" in body:
                    hook.target_type, hook.target_id = str(body["target"]["type"]), str(body["target"]["id"])
                hook.address = str(body.get("address", hook.address))
                hook.triggers = list(body.get("triggers", hook.triggers))
            return JSONResponse(hook.render(box.user))

    return [
        Route("/oauth2/token", token, methods=["POST"]),
        Route("/2.0/files/{item_id}", api(get_item("file")), methods=["GET"]),
        Route("/2.0/files/{file_id}/content", api(file_content), methods=["GET"]),
        Route("/2.0/files/{item_id}/trash", api(get_trashed("file")), methods=["GET"]),
        Route("/2.0/folders/{item_id}", api(get_item("folder")), methods=["GET"]),
        Route("/2.0/folders/{item_id}/trash", api(get_trashed("folder")), methods=["GET"]),
        Route("/2.0/folders/{folder_id}/items", api(folder_items), methods=["GET"]),
        Route("/2.0/events", api(events), methods=["GET"]),
        Route("/2.0/webhooks", api(create_webhook), methods=["POST"]),
        Route("/2.0/webhooks", api(list_webhooks), methods=["GET"]),
        Route("/2.0/webhooks/{webhook_id}", api(one_webhook), methods=["GET", "PUT", "DELETE"]),
        Route("/d/1/{token}/download", download, methods=["GET"]),
    ]
