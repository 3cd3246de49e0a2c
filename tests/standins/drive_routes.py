"""The Drive stand-in's HTTP surface (drive_server.py): Google's OAuth 2.0 token endpoint and the Drive API v3
calls a connector makes, answered from a DriveStore with the documented paths, parameters, JSON and errors:
- OAuth 2.0 refresh token grant: https://developers.google.com/identity/protocols/oauth2/web-server#offline
- changes: https://developers.google.com/drive/api/reference/rest/v3/changes/list, .../changes/getStartPageToken,
  .../changes/watch and .../channels/stop (https://developers.google.com/drive/api/guides/push)
- files: https://developers.google.com/drive/api/reference/rest/v3/files/list, .../files/get (alt=media),
  .../files/export
- errors and throttling: https://developers.google.com/drive/api/guides/handle-errors
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from standins.drive_fields import select_fields
from standins.drive_model import (
    CHANNEL_DEFAULT_LIFETIME,
    CHANNEL_MAX_LIFETIME,
    EXPORT_LIMIT_BYTES,
    EXPORTS,
    SCOPE,
    Channel,
    DriveError,
    RecordedRequest,
    in_scope,
    invalid,
    json_object,
    page_size_param,
    pieces,
    render_export,
    rfc3339,
    search_filter,
    utc_now,
)
from standins.drive_store import DriveStore
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class DriveApi:
    """The routes over one DriveStore; each API call is recorded, may be throttled, and needs a bearer token."""

    def __init__(self, store: DriveStore) -> None:
        self.store = store

    def app(self) -> Starlette:
        api = self._api
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/drive/v3/changes/startPageToken", api(self._start_page_token), methods=["GET"]),
                Route("/drive/v3/changes/watch", api(self._watch), methods=["POST"]),
                Route("/drive/v3/changes", api(self._changes), methods=["GET"]),
                Route("/drive/v3/channels/stop", api(self._stop), methods=["POST"]),
                Route("/drive/v3/files", api(self._list_files), methods=["GET"]),
                Route("/drive/v3/files/{file_id}/export", api(self._export), methods=["GET"]),
                Route("/drive/v3/files/{file_id}", api(self._get_file), methods=["GET"]),
            ]
        )

    async def _record(self, request: Request) -> bytes:
        body = await request.body()
        params = dict(request.query_params)
        self.store.requests.append(
            RecordedRequest(request.method, request.url.path, params, dict(request.headers), body)
        )
        return body

    def _api(self, handler: Callable[[Request, bytes], Response]) -> Callable[[Request], Any]:
        """Record, throttle, authenticate, then answer; Drive errors become their JSON error bodies."""

        async def endpoint(request: Request) -> Response:
            body = await self._record(request)
            with self.store.lock:
                throttled = self.store.throttles.pop(0) if self.store.throttles else None
                authorized = self._authorized(request.headers.get("authorization", ""))
            if throttled is not None:
                message = (
                    "Rate Limit Exceeded" if throttled.reason == "rateLimitExceeded" else "User Rate Limit Exceeded"
                )
                headers = {"Retry-After": throttled.retry_after} if throttled.retry_after else None
                error = DriveError(throttled.status, throttled.reason, message, domain="usageLimits")
                return error.response(headers)
            if not authorized:
                return _unauthenticated()
            try:
                with self.store.lock:
                    return handler(request, body)
            except DriveError as error:
                return error.response()

        return endpoint

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and self.store.access_tokens.get(token, 0.0) > time.monotonic()

    async def _token(self, request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await self._record(request)).decode()).items()}
        if form.get("client_id") != self.store.client_id or form.get("client_secret") != self.store.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "Unauthorized"}, 401)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, 400)
        if form.get("refresh_token") != self.store.refresh_token:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400
            )
        token = f"ya29.{secrets.token_urlsafe(32)}"
        with self.store.lock:
            self.store.access_tokens[token] = time.monotonic() + 3599
            self.store.issued_access_tokens.append(token)
        return JSONResponse({"access_token": token, "expires_in": 3599, "scope": SCOPE, "token_type": "Bearer"})

    def _start_page_token(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        self.store.drive_scope(params)
        body = {
            "kind": "drive#startPageToken",
            "startPageToken": self.store.page_token_for(len(self.store.change_log) + 1),
        }
        return JSONResponse(select_fields(body, "startPageToken", params.get("fields")))

    def _changes(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        drive_id, all_drives = self.store.drive_scope(params)
        position = self.store.change_position(params.get("pageToken"))
        page_size = page_size_param(params, default=100)
        include_removed = params.get("includeRemoved", "true") != "false"
        last_seen = {file_id: seq for seq, (file_id, _, _) in enumerate(self.store.change_log, start=1)}
        changes: list[dict[str, Any]] = []
        while position <= len(self.store.change_log) and len(changes) < page_size:
            file_id, when, entry_drive = self.store.change_log[position - 1]
            # Each file once, where it last changed, in its current state.
            if last_seen[file_id] == position and in_scope(entry_drive, drive_id, all_drives):
                change = self._change(file_id, when)
                if include_removed or not change["removed"]:
                    changes.append(change)
            position += 1
        body: dict[str, Any] = {"kind": "drive#changeList", "changes": changes}
        last_page = position > len(self.store.change_log)
        body["newStartPageToken" if last_page else "nextPageToken"] = self.store.page_token_for(position)
        return JSONResponse(select_fields(body, "changeList", params.get("fields")))

    def _change(self, file_id: str, when: datetime) -> dict[str, Any]:
        change = {"kind": "drive#change", "changeType": "file", "time": rfc3339(when), "fileId": file_id}
        stored = self.store.files.get(file_id)
        if stored is None:
            return change | {"removed": True}
        return change | {"removed": False, "file": self.store.file_resource(stored)}

    def _watch(self, request: Request, body: bytes) -> Response:
        params = dict(request.query_params)
        drive_id, all_drives = self.store.drive_scope(params)
        if not params.get("pageToken"):
            raise DriveError(400, "required", "Required parameter: pageToken", location="pageToken")
        position = self.store.change_position(params["pageToken"])
        channel = json_object(body)
        channel_id, address = str(channel.get("id") or ""), str(channel.get("address") or "")
        if not re.fullmatch(r"[A-Za-z0-9\-_+/=]{1,64}", channel_id):
            raise DriveError(400, "invalid", "Invalid channel id", location="id")
        if channel.get("type") not in ("web_hook", "webhook") or not address:
            raise DriveError(400, "invalid", "Invalid channel type or address")
        if not address.startswith("https://") and not self.store.allow_http_addresses:
            raise DriveError(
                400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}", domain="push"
            )
        if channel_id in self.store.channels_by_id:
            raise DriveError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique", domain="push")
        resource_uri = f"{self.store.api_url}/changes?alt=json&pageToken={params['pageToken']}"
        created = Channel(
            channel_id, self._resource_id(drive_id), resource_uri,
            address, channel.get("token"), self._expiration(channel.get("expiration")), drive_id, all_drives, position,
        )  # fmt: skip
        self.store.channels_by_id[channel_id] = created
        self.store.notify(created, "sync")  # Drive opens every channel with a `sync` message
        answer = {"kind": "api#channel", "id": created.id, "resourceId": created.resource_id}
        answer |= {"resourceUri": created.resource_uri, "expiration": str(int(created.expiration.timestamp() * 1000))}
        if created.token is not None:
            answer["token"] = created.token
        return JSONResponse(answer)

    def _expiration(self, requested: Any) -> datetime:
        """As asked (an hour when not asked), at most a week, or less when a test limited the next channels: the
        expiration in the answer is the one that holds."""
        now = utc_now()
        if requested in (None, ""):
            wanted = now + CHANNEL_DEFAULT_LIFETIME
        else:
            try:
                wanted = datetime.fromtimestamp(int(requested) / 1000, UTC)
            except (TypeError, ValueError) as exc:
                raise invalid("expiration") from exc
            if wanted <= now:
                seconds = int((wanted - now).total_seconds())
                raise DriveError(400, "invalid", f"Invalid ttl value for channel {seconds}")
        lifetimes = self.store.channel_lifetimes
        return min(wanted, now + (lifetimes.pop(0) if lifetimes else CHANNEL_MAX_LIFETIME))

    def _resource_id(self, drive_id: str | None) -> str:
        """Opaque, stable per watched resource (the user's change feed, or one shared drive's)."""
        return hashlib.sha1(f"{self.store.user.email}/{drive_id}".encode(), usedforsecurity=False).hexdigest()[:27]

    def _stop(self, _: Request, body: bytes) -> Response:
        stop = json_object(body)
        channel = self.store.channels_by_id.get(str(stop.get("id", "")))
        if channel is None or channel.stopped or channel.resource_id != stop.get("resourceId"):
            raise DriveError(404, "notFound", f"Channel '{stop.get('id')}' not found for project 'standin'")
        channel.stopped = True
        return Response(status_code=204)

    def _list_files(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        drive_id, all_drives = self.store.corpus(params)
        matches = search_filter(params.get("q", ""))
        page_size = page_size_param(params, default=100)
        key = json.dumps([params.get(k) for k in ("q", "corpora", "driveId", "includeItemsFromAllDrives")])
        offset = 0
        if params.get("pageToken"):
            offset, token_key = self.store.list_tokens.get(params["pageToken"], (-1, ""))
            if offset < 0 or token_key != key:
                raise invalid("pageToken")
        found = [
            f
            for f in self.store.files.values()
            if not f.is_root and in_scope(f.drive_id, drive_id, all_drives) and matches(f)
        ]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False}
        body["files"] = [self.store.file_resource(f) for f in found[offset : offset + page_size]]
        if offset + page_size < len(found):
            token = secrets.token_urlsafe(24)
            self.store.list_tokens[token] = (offset + page_size, key)
            body["nextPageToken"] = token
        return JSONResponse(select_fields(body, "fileList", params.get("fields")))

    def _get_file(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        stored = self.store.visible(request.path_params["file_id"], params)
        if params.get("alt") != "media":
            return JSONResponse(select_fields(self.store.file_resource(stored), "file", params.get("fields")))
        if stored.content is None:
            message = "Only files with binary content can be downloaded. Use Export with Docs Editors files."
            raise DriveError(403, "fileNotDownloadable", message, location="alt")
        headers = {"Content-Length": str(stored.size), "ETag": f'"{stored.md5}"'}
        return StreamingResponse(pieces(stored.content), media_type=stored.mime_type, headers=headers)

    def _export(self, request: Request, _: bytes) -> Response:
        params = dict(request.query_params)
        stored = self.store.visible(request.path_params["file_id"], params)
        wanted = params.get("mimeType", "")
        if stored.mime_type not in EXPORTS:
            raise DriveError(403, "fileNotExportable", "Export only supports Docs Editors files.")
        if wanted not in EXPORTS[stored.mime_type]:
            raise DriveError(400, "badRequest", "The requested conversion is not supported.", location="convertTo")
        rendered = render_export(stored, wanted)
        if len(rendered) > EXPORT_LIMIT_BYTES:
            raise DriveError(403, "exportSizeLimitExceeded", "This file is too large to be exported.")
        return Response(rendered, media_type=wanted)


def _unauthenticated() -> JSONResponse:
    message = (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential."
    )
    detail = {"message": "Invalid Credentials", "domain": "global", "reason": "authError"}
    detail |= {"location": "Authorization", "locationType": "header"}
    body = {"error": {"code": 401, "message": message, "errors": [detail], "status": "UNAUTHENTICATED"}}
    headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
    return JSONResponse(body, status_code=401, headers=headers)
