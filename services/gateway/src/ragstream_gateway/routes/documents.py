"""Documents API: upload (JSON text or multipart file), read status, list, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from ragstream_common.formats import ACCEPTED_TYPES

from ragstream_gateway.config import GatewaySettings
from ragstream_gateway.deps import GatewayDeps, Principal, get_deps, get_documents, get_settings, require_scope
from ragstream_gateway.documents import DocumentNotFound, DocumentService, PublishFailed
from ragstream_gateway.models import (
    DOCUMENT_ID_PATTERN,
    DocumentAccepted,
    DocumentError,
    DocumentPage,
    DocumentTextIn,
    DocumentView,
)
from ragstream_gateway.ports import DocumentRecord, DocumentStatus
from ragstream_gateway.problems import Problem, concealed, problem_responses
from ragstream_gateway.quota_registry import precheck_upload
from ragstream_gateway.security import SCOPE_DOCUMENTS_READ, SCOPE_DOCUMENTS_WRITE
from ragstream_gateway.uploads import read_upload

router = APIRouter(prefix="/v1/documents", tags=["documents"])
DocumentIdPath = Annotated[str, Path(pattern=DOCUMENT_ID_PATTERN, description="Document id")]
Writer = Annotated[Principal, Depends(require_scope(SCOPE_DOCUMENTS_WRITE))]
Reader = Annotated[Principal, Depends(require_scope(SCOPE_DOCUMENTS_READ))]
AUTH_PROBLEMS = (401, 403, 429)

_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": f"One of {', '.join(ACCEPTED_TYPES)}"},
        "id": {"type": "string", "pattern": DOCUMENT_ID_PATTERN},
        "title": {"type": "string", "maxLength": 1024},
        "metadata": {"type": "string", "description": "JSON object of string keys and values"},
    },
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": DocumentTextIn.model_json_schema()},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}


def document_view(record: DocumentRecord) -> DocumentView:
    error = DocumentError(stage=record.error_stage or "", message=record.error or "") if record.error else None
    return DocumentView(
        document_id=record.document_id,
        version=record.version,
        status=record.status,
        title=record.title,
        metadata=record.metadata,
        content_type=record.content_type,
        content_sha256=record.content_sha256,
        size_bytes=record.size_bytes,
        chunk_count=record.chunk_count,
        error=error,
        created_at=record.created_at,
        updated_at=record.updated_at,
        indexed_at=record.indexed_at,
        deleted_at=record.deleted_at,
    )


def _not_found(document_id: str) -> Problem:
    return Problem(404, f"no document {document_id!r}", slug="document-not-found")


def _unavailable(request: Request, exc: PublishFailed) -> Problem:
    return concealed(
        request,
        503,
        f"{exc}; nothing was accepted, retry the request",
        slug="publish-failed",
        cause=exc.__cause__ or exc,
        headers={"Retry-After": "5"},
    )


@router.post(
    "",
    status_code=202,
    response_model=DocumentAccepted,
    summary="Upload a document (new id or a new version of an existing one)",
    description=(
        "JSON `{id?, title?, text, metadata?, content_type?}` or multipart `file` (+ `id`, `title`, `metadata` "
        "as a JSON string). 202: the version is registered and its event published. 200: identical content, "
        "title and metadata to the current version; nothing new was registered (`unchanged: true`)."
    ),
    responses={
        200: {"model": DocumentAccepted, "description": "Unchanged"},
        **problem_responses(*AUTH_PROBLEMS, 413, 415, 422, 503),
    },
    openapi_extra=_UPLOAD_BODY,
)
async def upload_document(
    request: Request,
    response: Response,
    principal: Writer,
    settings: Annotated[GatewaySettings, Depends(get_settings)],
    service: Annotated[DocumentService, Depends(get_documents)],
    deps: Annotated[GatewayDeps, Depends(get_deps)],
) -> DocumentAccepted:
    submission = await read_upload(request, principal.tenant_id, settings.max_upload_bytes)
    if deps.quotas is not None:  # before the content is stored, so a refused upload leaves nothing behind
        await precheck_upload(deps.quotas, deps.registry, submission)
    try:
        document_id, registration = await service.submit(submission, principal.caller())
    except PublishFailed as exc:
        raise _unavailable(request, exc) from None
    response.headers["Location"] = f"{request.url.path}/{document_id}"
    if registration.unchanged:
        response.status_code = 200
    return DocumentAccepted(
        document_id=document_id,
        version=registration.version,
        status=registration.status,
        unchanged=registration.unchanged,
    )


@router.get("/{document_id}", response_model=DocumentView, responses=problem_responses(*AUTH_PROBLEMS, 404, 422))
async def get_document(
    document_id: DocumentIdPath, principal: Reader, deps: Annotated[GatewayDeps, Depends(get_deps)]
) -> DocumentView:
    record = await deps.registry.get(principal.tenant_id, document_id)
    if record is None:
        raise _not_found(document_id)
    return document_view(record)


@router.get(
    "",
    response_model=DocumentPage,
    responses=problem_responses(*AUTH_PROBLEMS, 422),
    summary="List documents, newest first (deleted ones only when asked for by status)",
)
async def list_documents(
    principal: Reader,
    deps: Annotated[GatewayDeps, Depends(get_deps)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")] = None,
    status: DocumentStatus | None = None,
) -> DocumentPage:
    try:
        listing = await deps.registry.list(principal.tenant_id, limit=limit, cursor=cursor, status=status)
    except ValueError as exc:
        raise Problem(422, str(exc), slug="invalid-cursor") from None
    return DocumentPage(items=[document_view(r) for r in listing.items], next_cursor=listing.next_cursor)


@router.delete(
    "/{document_id}",
    status_code=202,
    response_model=DocumentAccepted,
    responses=problem_responses(*AUTH_PROBLEMS, 404, 422, 503),
    summary="Delete every version of a document from the index (idempotent)",
)
async def delete_document(
    request: Request,
    document_id: DocumentIdPath,
    principal: Writer,
    service: Annotated[DocumentService, Depends(get_documents)],
) -> DocumentAccepted:
    try:
        record = await service.delete(principal.tenant_id, document_id, principal.caller())
    except DocumentNotFound:
        raise _not_found(document_id) from None
    except PublishFailed as exc:
        raise _unavailable(request, exc) from None
    return DocumentAccepted(document_id=document_id, version=record.version, status="deleted")
