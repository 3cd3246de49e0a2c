"""RFC 9457 problem details: every error the gateway returns is `application/problem+json`.

Problem types are URNs (`urn:ragstream:problem:<slug>`): stable identifiers clients can switch on, not
pages to fetch. Plain HTTP errors without extra meaning use `about:blank`, whose title is the status phrase.

Internal failures never show their exception text: a 500 (any unexpected exception), an unreachable dependency
and a failed pipeline stage answer a fixed detail plus `correlation_id`, which the log line holding the exception
carries too (correlation.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ragstream_common.logs import get_logger
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragstream_gateway.correlation import CORRELATION_HEADER, correlation_id
from ragstream_gateway.security_headers import API_HEADERS

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:ragstream:problem:"
log = get_logger(__name__)


class ProblemDetails(BaseModel):
    """The body of every error response (RFC 9457); extension members may follow."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", description="URI identifying the problem type")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="HTTP status code")
    detail: str = Field(default="", description="Explanation of this occurrence")
    instance: str = Field(default="", description="The request path this occurrence belongs to")


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.type = f"{PROBLEM_TYPE_PREFIX}{slug}" if slug else "about:blank"
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


def problem_body(
    status: int,
    *,
    instance: str,
    detail: str = "",
    type_: str = "about:blank",
    title: str | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type_,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    for name, value in (extensions or {}).items():
        body.setdefault(name, value)
    return body


def problem_response(
    request: Request,
    status: int,
    *,
    detail: str = "",
    type_: str = "about:blank",
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = problem_body(
        status, instance=request.url.path, detail=detail, type_=type_, title=title, extensions=extensions
    )
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    headers, extensions = exc.headers, exc.extensions
    if exc.status >= 500:  # the server's trouble: name the id that finds its log lines
        reference = correlation_id(request.scope)
        headers = {CORRELATION_HEADER: reference, **headers}
        extensions = {"correlation_id": reference, **extensions}
    return problem_response(
        request,
        exc.status,
        detail=exc.detail,
        type_=exc.type,
        title=exc.title,
        headers=headers,
        extensions=extensions,
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else ""
    if detail == HTTPStatus(exc.status_code).phrase:
        detail = ""
    if exc.status_code == 404 and not detail:
        detail = f"no resource at {request.url.path}"
    if exc.status_code == 400 and detail == _BODY_NOT_PARSED:  # a body that is not UTF-8: invalid like bad JSON
        error = {"loc": ("body",), "msg": "the body is not UTF-8 encoded JSON", "type": "json_invalid"}
        return await _on_validation_error(request, RequestValidationError([error]))
    return problem_response(request, exc.status_code, detail=detail, headers=exc.headers)


# FastAPI's detail when a JSON body cannot even be decoded (its 400 is documented nowhere; the API answers 422).
_BODY_NOT_PARSED = "There was an error parsing the body"


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(
        request,
        422,
        detail=summary or "the request is not valid",
        type_=f"{PROBLEM_TYPE_PREFIX}validation",
        title="Request validation failed",
        extensions={"errors": errors},
    )


def concealed(
    request: Request,
    status: int,
    detail: str,
    *,
    slug: str,
    cause: object,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Problem:
    """A problem whose `cause` (an exception, a worker's failure reason) goes to the log, not to the client:
    the client gets `detail` and the correlation id that finds the log line."""
    reference = correlation_id(request.scope)
    log.warning(
        "request failed",
        status=status,
        problem=slug,
        path=request.url.path,
        correlation_id=reference,
        cause=repr(cause)[:2000],
    )
    return Problem(
        status,
        f"{detail} (correlation id {reference})",
        slug=slug,
        headers={**(headers or {}), CORRELATION_HEADER: reference},
        extensions={**(extensions or {}), "correlation_id": reference},
    )


async def on_dependency_down(request: Request, exc: Exception) -> JSONResponse:
    """A backing service (database, blob store) is unreachable: 503, worth retrying."""
    reference = correlation_id(request.scope)
    log.error("dependency unavailable", path=request.url.path, error=repr(exc), correlation_id=reference)
    return problem_response(
        request,
        503,
        detail="a backing service is unavailable; retry shortly",
        type_=f"{PROBLEM_TYPE_PREFIX}unavailable",
        headers={"Retry-After": "5", CORRELATION_HEADER: reference},
        extensions={"correlation_id": reference},
    )


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Runs outside every middleware (Starlette's ServerErrorMiddleware): the headers they add are set here.
    reference = correlation_id(request.scope)
    log.error("unhandled error", path=request.url.path, correlation_id=reference, error=repr(exc), exc_info=exc)
    return problem_response(
        request,
        500,
        detail=f"an unexpected error occurred; quote correlation id {reference} when reporting it",
        type_=f"{PROBLEM_TYPE_PREFIX}internal",
        headers={**API_HEADERS, CORRELATION_HEADER: reference},
        extensions={"correlation_id": reference},
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error with a problem document, and declare its schema in the OpenAPI components."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {})["ProblemDetails"] = (
                ProblemDetails.model_json_schema()
            )
            _document_refusals(schema)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


# What any authenticated call may answer before its handler runs: the credential (401), its scope, the allowlist
# or a disabled tenant (403), a rate limit (429), the limits store down (503, fail closed).
AUTH_REFUSALS = (401, 403, 429, 503)


def _document_refusals(schema: dict[str, Any]) -> None:
    """Declare AUTH_REFUSALS on every operation that requires a credential, so no route can forget one."""
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("security"):
                responses = operation.setdefault("responses", {})
                for status, response in problem_responses(*AUTH_REFUSALS).items():
                    responses.setdefault(str(status), response)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problem statuses a route can answer with."""
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {
        status: {"description": HTTPStatus(status).phrase, "content": {PROBLEM_JSON: {"schema": schema}}}
        for status in statuses
    }
