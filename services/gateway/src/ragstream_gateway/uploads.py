"""Reading a document upload from an HTTP request: a JSON text document or a multipart file.

The request body is capped by `BodySizeLimit` (413 before or while it is read); content is checked
against the accepted formats (415); fields are validated by the pydantic models (422).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from ragstream_common.formats import bare_mime
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragstream_gateway.content import resolve_upload_type
from ragstream_gateway.documents import Submission
from ragstream_gateway.models import DocumentFields, DocumentTextIn
from ragstream_gateway.problems import Problem

# Room for the multipart envelope and form fields around a file of the maximum size.
ENVELOPE_BYTES = 256 * 1024
_FORM_FIELDS = {"file", "id", "title", "metadata"}


class BodyTooLarge(StarletteHTTPException):
    """An HTTPException so that FastAPI's body parsing passes it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")


class BodySizeLimit:
    """ASGI middleware: refuse bodies over `max_bytes`, by Content-Length up front or by counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, receive if scope["method"] in ("GET", "HEAD") else limited_receive, send)


def _validation_error(error: ValidationError, *prefix: str) -> RequestValidationError:
    errors = [{**e, "loc": (*prefix, *e["loc"])} for e in error.errors(include_url=False)]
    return RequestValidationError(errors)


def _field_error(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise Problem(413, f"the document is {size} bytes; the limit is {max_bytes}", slug="document-too-large")
    if size == 0:
        raise _field_error("file", "the document is empty")


async def read_json_upload(request: Request, tenant_id: str, max_bytes: int) -> Submission:
    body = await request.body()
    try:
        parsed = DocumentTextIn.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc, "body") from None
    content = parsed.text.encode("utf-8")
    _check_size(len(content), max_bytes)
    return Submission(
        tenant_id, parsed.id, parsed.title, parsed.metadata, content, parsed.content_type, inline_allowed=True
    )


async def read_multipart_upload(request: Request, tenant_id: str, max_bytes: int) -> Submission:
    try:
        form = await request.form(max_files=1, max_fields=len(_FORM_FIELDS), max_part_size=1024 * 1024)
    except BodyTooLarge:
        raise
    except StarletteHTTPException as exc:
        raise Problem(422, f"malformed multipart body: {exc.detail}", slug="malformed-body") from None
    try:
        unknown = sorted(set(form.keys()) - _FORM_FIELDS)
        if unknown:
            raise _field_error(unknown[0], f"unknown form field (expected {', '.join(sorted(_FORM_FIELDS))})")
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _field_error("file", "a multipart upload needs a 'file' part")
        fields = _form_fields(form.get("id"), form.get("title"), form.get("metadata"))
        data = await upload.read(max_bytes + 1)
        _check_size(len(data), max_bytes)
        content_type = resolve_upload_type(upload.content_type, upload.filename, data)
        return Submission(
            tenant_id, fields.id, fields.title, fields.metadata, data, content_type, filename=upload.filename or ""
        )
    finally:
        await form.close()


def _form_fields(document_id: Any, title: Any, metadata: Any) -> DocumentFields:
    raw: dict[str, Any] = {}
    for name, value in (("id", document_id), ("title", title), ("metadata", metadata)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise _field_error(name, "must be a plain form field, not a file")
        raw[name] = value
    if "metadata" in raw:
        try:
            raw["metadata"] = json.loads(raw["metadata"]) if raw["metadata"].strip() else {}
        except json.JSONDecodeError as exc:
            raise _field_error("metadata", f"must be a JSON object: {exc.msg}") from None
        except RecursionError:  # nested deeper than the parser goes: no metadata object is like that
            raise _field_error("metadata", "must be a JSON object of strings, not nested") from None
    try:
        return DocumentFields.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, "body") from None


async def read_upload(request: Request, tenant_id: str, max_bytes: int) -> Submission:
    media_type = bare_mime(request.headers.get("content-type"))
    if media_type == "application/json":
        return await read_json_upload(request, tenant_id, max_bytes)
    if media_type == "multipart/form-data":
        return await read_multipart_upload(request, tenant_id, max_bytes)
    raise Problem(
        415,
        f"send application/json or multipart/form-data, not {media_type or 'no content type'!r}",
        slug="unsupported-media-type",
    )
