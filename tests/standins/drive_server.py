"""Stand-in for the Google Drive API v3 and Google's OAuth 2.0 token endpoint: the real wire protocol over a
scriptable drive, with push notification channels that really POST to the address they are given.

    with DriveStandin(client_id="cid", client_secret="secret", refresh_token="rt") as drive:
        endpoints = ProviderEndpoints(drive_api_url=drive.api_url, google_token_url=drive.token_url)
        file_id = drive.create_file("report.txt", b"Quarterly numbers")
        drive.rename(file_id, "report-2024.txt")
        drive.throttle(2, status=403, reason="userRateLimitExceeded")
        drive.wait_for_deliveries(2)          # the channel's `sync` message, then a `change`

What it follows (paths, parameters, JSON field names, headers and status codes as documented):
- Push notifications, https://developers.google.com/drive/api/guides/push: `POST /drive/v3/changes/watch`
  takes a channel {id, type "web_hook", address, token, expiration (ms)} and answers an `api#channel` with
  `resourceId`, `resourceUri` and the granted `expiration` (at most one week for changes; an expiration in the
  past is refused "Invalid ttl value"). A `sync` message follows at once, then a `change` message for each
  change, POSTed with an empty body and X-Goog-Channel-ID, X-Goog-Channel-Token, X-Goog-Channel-Expiration,
  X-Goog-Resource-ID, X-Goog-Resource-URI, X-Goog-Resource-State and X-Goog-Message-Number (1 for `sync`, then
  increasing). 200/201/202/204/102 are success; 500/502/503/504 are retried with exponential backoff; anything
  else is a failed message. `POST /drive/v3/channels/stop` {id, resourceId} answers 204, or 404 when unknown.
- Changes, https://developers.google.com/drive/api/guides/manage-changes and .../reference/rest/v3/changes/
  list, .../changes/getStartPageToken: `GET /drive/v3/changes/startPageToken`, `GET /drive/v3/changes` with
  `pageToken` (required), `pageSize` (1-1000, default 100), `includeRemoved`, `driveId`, `supportsAllDrives`,
  `includeItemsFromAllDrives`; pages carry `nextPageToken` until the last, which carries `newStartPageToken`.
  Each file appears once, in its current state: `removed: true` without `file` once deleted for good, a
  trashed file with `file.trashed: true`. A page token Drive does not accept is 400 `invalid` at `pageToken`.
- Files, .../reference/rest/v3/files/list, /get, /export and https://developers.google.com/drive/api/guides/
  ref-export-formats: `files.list` (`q`, `corpora` user|drive|allDrives, `driveId`, `pageSize`, `pageToken`),
  `files.get` (metadata, or the bytes with `alt=media`; Docs Editors files answer 403 fileNotDownloadable),
  `files.export` (Docs Editors files only, 403 fileNotExportable otherwise; 400 for a format the type cannot
  be exported to; 403 exportSizeLimitExceeded past 10 MB). Items in shared drives are found only with
  `supportsAllDrives=true`, and their `permissions` are never populated.
- Partial responses, https://developers.google.com/drive/api/guides/fields-parameter: only the fields asked
  for in `fields` are returned (a file defaults to kind,id,name,mimeType); an unknown field is 400.
- Errors, https://developers.google.com/drive/api/guides/handle-errors: {"error": {"code", "message",
  "errors": [{"domain", "reason", "message", ...}]}}; throttling is 429 `rateLimitExceeded` or 403
  `rateLimitExceeded`/`userRateLimitExceeded`; a bad access token is 401 `authError`.
- OAuth 2.0, https://developers.google.com/identity/protocols/oauth2/web-server#offline: `POST /token` with
  grant_type=refresh_token, client_id, client_secret, refresh_token (form-encoded) answers access_token,
  expires_in, scope, token_type; 401 invalid_client, 400 invalid_grant.

On purpose unlike the real service: notification addresses may be plain http on loopback (Drive requires
HTTPS; `allow_http_addresses=False` restores the refusal), one change log serves every drive (page tokens are
opaque either way), and Docs Editors files export only to the text formats (others answer 501).

Modules: drive_model.py (resources, errors, rendering), drive_fields.py (partial responses), drive_store.py (the
drive, its change log and channels), drive_routes.py (the HTTP API), drive_push.py (notification delivery); this
one runs them and holds the test controls (faults, observation).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from standins.drive_model import Channel, Delivery, DriveError, Person, RecordedRequest, StoredFile, Throttle, utc_now
from standins.drive_push import Message
from standins.drive_routes import DriveApi
from standins.drive_store import DriveStore
from standins.server import Standin
from starlette.types import ASGIApp

__all__ = ["Channel", "Delivery", "DriveError", "DriveStandin", "Person", "RecordedRequest", "StoredFile"]


class DriveStandin(DriveStore, Standin):
    """The drive (DriveStore) served on 127.0.0.1 at a free port, with the controls tests script it by."""

    standin_name = "drive-standin"

    # --- lifecycle -------------------------------------------------------------------------
    def _app(self) -> ASGIApp:
        return DriveApi(self).app()

    def _start_helpers(self) -> None:
        self.postman.start()

    def _stop_helpers(self) -> None:
        self.postman.stop()

    # --- control: faults -----------------------------------------------------------------------
    def throttle(
        self, count: int = 1, *, status: int = 429, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        """Refuse the next `count` API calls: 429 rateLimitExceeded, or 403 with `reason` (rateLimitExceeded or
        userRateLimitExceeded); `retry_after` adds a Retry-After header (seconds)."""
        reason = reason or ("rateLimitExceeded" if status == 429 else "userRateLimitExceeded")
        header = None if retry_after is None else f"{retry_after:g}"
        with self.lock:
            self.throttles.extend(Throttle(status, reason, header) for _ in range(count))

    def invalidate_page_tokens(self) -> None:
        """Every page token handed out so far (changes and files.list) is refused from now on."""
        with self.lock:
            self.token_epoch += 1
            self.list_tokens.clear()

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def drop_notifications(self, count: int) -> None:
        """Lose the next `count` notification messages (recorded as dropped, never sent)."""
        with self.lock:
            self.notifications_to_drop += count

    def resend(self, delivery: Delivery) -> None:
        """Deliver a message again, same headers and message number (Drive may deliver a message twice)."""
        message = Message(
            self.channels_by_id[delivery.channel_id].address,
            delivery.headers,
            delivery.channel_id,
            delivery.message_number,
            delivery.state,
            dropped=False,
        )
        self.postman.send(message)

    def limit_next_channels(self, lifetime: timedelta, count: int = 1) -> None:
        """Grant the next `count` watch channels at most `lifetime` (the answer's `expiration` says so), as a
        channel that soon needs renewing."""
        with self.lock:
            self.channel_lifetimes.extend([lifetime] * count)

    def expire_channel(self, channel_id: str) -> None:
        with self.lock:
            self.channels_by_id[channel_id].expiration = utc_now() - timedelta(seconds=1)

    # --- observation ---------------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        with self.lock:
            return list(self.channels_by_id.values())

    def known_secrets(self) -> dict[str, str]:
        """Every credential the service knows or handed out, by a name for messages: the OAuth client secret and
        refresh token, the watch channels' tokens and the access tokens issued. Tests look for them where they
        must never be (logs, errors, audit entries)."""
        with self.lock:
            named = {"client_secret": self.client_secret, "refresh_token": self.refresh_token}
            named |= {f"channel token {c.id}": c.token or "" for c in self.channels_by_id.values()}
            named |= {f"access token {n}": token for n, token in enumerate(self.issued_access_tokens)}
        return {name: value for name, value in named.items() if value}

    def requests_to(self, path: str, method: str = "GET") -> list[RecordedRequest]:
        """Recorded requests whose path ends with `path` (e.g. "/changes", "/files", "/channels/stop")."""
        return [r for r in list(self.requests) if r.method == method and r.path.endswith(path)]

    def wait_for_deliveries(self, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        """Wait until at least `count` messages were delivered or dropped and none is in flight."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.deliveries) >= count and self.postman.idle():
                return list(self.deliveries)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.deliveries)} of {count} notification messages after {timeout_s}s")

    async def delivered(self, count: int, timeout_s: float = 10.0) -> list[Delivery]:
        """wait_for_deliveries for async tests: the event loop keeps running (a receiver may live on it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.deliveries) >= count and self.postman.idle():
                return list(self.deliveries)
            await asyncio.sleep(0.01)
        raise AssertionError(f"{len(self.deliveries)} of {count} notification messages after {timeout_s}s")
