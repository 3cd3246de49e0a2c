"""The Drive stand-in's model (drive_server.py): files, channels and recorded traffic, Drive's error shape, and
the pure helpers that render them. Field names follow the Drive API v3 reference
(https://developers.google.com/drive/api/reference/rest/v3); errors the handle-errors guide
(https://developers.google.com/drive/api/guides/handle-errors); export formats
https://developers.google.com/drive/api/guides/ref-export-formats; search terms
https://developers.google.com/drive/api/guides/search-files.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
DOCS_EDITORS = {
    "document": "application/vnd.google-apps.document",
    "spreadsheet": "application/vnd.google-apps.spreadsheet",
    "presentation": "application/vnd.google-apps.presentation",
}
# ref-export-formats: what each Docs Editors type exports to (the text ones are rendered here).
EXPORTS = {
    DOCS_EDITORS["document"]: {
        "text/plain", "text/markdown", "text/html", "application/pdf", "application/rtf", "application/zip",
        "application/epub+zip", "application/vnd.oasis.opendocument.text",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    },
    DOCS_EDITORS["spreadsheet"]: {
        "text/csv", "text/tab-separated-values", "application/pdf", "application/zip",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    },
    DOCS_EDITORS["presentation"]: {
        "text/plain", "application/pdf", "application/vnd.oasis.opendocument.presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    },
}  # fmt: skip
EXPORT_LIMIT_BYTES = 10 * 1024 * 1024
TOKEN_EPOCH = 10**9
CHANNEL_MAX_LIFETIME = timedelta(weeks=1)  # push guide: the changes resource's maximum
CHANNEL_DEFAULT_LIFETIME = timedelta(hours=1)
SCOPE = "https://www.googleapis.com/auth/drive.readonly"


class DriveError(Exception):
    """A Drive error response (handle-errors guide shape)."""

    def __init__(
        self, status: int, reason: str, message: str, *, domain: str = "global", location: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.domain, self.location = status, reason, message, domain, location

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        detail: dict[str, Any] = {"message": self.message, "domain": self.domain, "reason": self.reason}
        if self.location:
            detail |= {"location": self.location, "locationType": "parameter"}
        body = {"error": {"code": self.status, "message": self.message, "errors": [detail]}}
        return JSONResponse(body, status_code=self.status, headers=headers)


def invalid(location: str, message: str = "Invalid Value") -> DriveError:
    return DriveError(400, "invalid", message, location=location)


@dataclass
class Person:
    display_name: str
    email: str

    def resource(self, me: bool) -> dict[str, Any]:
        return {"kind": "drive#user", "displayName": self.display_name, "emailAddress": self.email, "me": me}


@dataclass
class StoredFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    drive_id: str | None
    modified_by: Person
    created: datetime
    modified: datetime
    content: bytes | Path | None = None  # binary files (a Path streams from disk)
    text: str = ""  # Docs Editors files: markdown-ish source (a spreadsheet: CSV)
    md5: str | None = None
    size: int | None = None
    version: int = 1
    trashed: bool = False
    explicitly_trashed: bool = False
    is_root: bool = False
    readers: list[str] = field(default_factory=list)
    shortcut_target: str | None = None


@dataclass
class Channel:
    id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration: datetime
    drive_id: str | None
    all_drives: bool
    page_token: int
    message_number: int = 0
    stopped: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Delivery:
    """One notification message as sent: its headers and what the receiver answered (None: unreachable)."""

    channel_id: str
    message_number: int
    state: str
    headers: dict[str, str]
    status: int | None
    attempts: int
    dropped: bool = False


@dataclass(frozen=True)
class Throttle:
    status: int
    reason: str
    retry_after: str | None


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def in_scope(item_drive: str | None, drive_id: str | None, all_drives: bool) -> bool:
    if drive_id is not None:
        return item_drive == drive_id
    return item_drive is None or all_drives


def web_view_link(stored: StoredFile) -> str:
    if stored.mime_type == FOLDER:
        return f"https://drive.google.com/drive/folders/{stored.id}"
    for kind, mime_type in DOCS_EDITORS.items():
        if stored.mime_type == mime_type:
            path = {"document": "document", "spreadsheet": "spreadsheets", "presentation": "presentation"}[kind]
            return f"https://docs.google.com/{path}/d/{stored.id}/edit?usp=drivesdk"
    return f"https://drive.google.com/file/d/{stored.id}/view?usp=drivesdk"


def pieces(content: bytes | Path, size: int = 1024 * 1024) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield from (content[i : i + size] for i in range(0, len(content), size))
        return
    with content.open("rb") as handle:
        while piece := handle.read(size):
            yield piece


def render_export(stored: StoredFile, mime_type: str) -> bytes:
    text = stored.text
    if mime_type in ("text/markdown", "text/csv"):
        return text.encode()
    if mime_type == "text/plain":
        return re.sub(r"(?m)^#+\s*", "", text).encode()
    if mime_type == "text/tab-separated-values":
        out = io.StringIO()
        csv.writer(out, delimiter="\t", lineterminator="\n").writerows(csv.reader(io.StringIO(text)))
        return out.getvalue().encode()
    if mime_type == "text/html":
        lines = [
            f"<h1>{line.lstrip('#').strip()}</h1>" if line.startswith("#") else f"<p>{line}</p>"
            for line in text.splitlines()
            if line.strip()
        ]
        return f"<html><body>{''.join(lines)}</body></html>".encode()
    raise DriveError(501, "notImplemented", f"The stand-in does not render {mime_type}.")


def page_size_param(params: dict[str, str], *, default: int) -> int:
    raw = params.get("pageSize", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise invalid("pageSize", f"Invalid value '{raw}'. Values must be within the range: [1, 1000]")
    return int(raw)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError as exc:
        raise DriveError(400, "parseError", "Parse Error") from exc
    if not isinstance(parsed, dict):
        raise DriveError(400, "parseError", "Parse Error")
    return parsed


SEARCH_CLAUSE = re.compile(
    r"""\s*(?:(?P<trashed>trashed\s*=\s*(?P<tv>true|false))"""
    r"""|'(?P<parent>[^']+)'\s+in\s+parents"""
    r"""|(?P<field>mimeType|name)\s*(?P<op>!=|=)\s*'(?P<value>[^']*)')\s*""",
    re.IGNORECASE,
)


def search_filter(q: str) -> Callable[[StoredFile], bool]:
    """The `q` search terms used against this stand-in: trashed, parents, mimeType and name, joined by `and`
    (search-files guide); anything else is refused as Drive refuses a query it cannot parse."""
    clauses: list[re.Match[str]] = []
    for clause in filter(None, re.split(r"\s+and\s+", q.strip(), flags=re.IGNORECASE)):
        match = SEARCH_CLAUSE.fullmatch(clause)
        if match is None:
            raise invalid("q")
        clauses.append(match)

    def holds(stored: StoredFile, match: re.Match[str]) -> bool:
        if match["trashed"]:
            return stored.trashed == (match["tv"].lower() == "true")
        if match["parent"]:
            return match["parent"] in stored.parents
        value = stored.mime_type if match["field"] == "mimeType" else stored.name
        return (value == match["value"]) == (match["op"] == "=")

    return lambda stored: all(holds(stored, match) for match in clauses)
