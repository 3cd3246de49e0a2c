"""Correlation ids: what a client quotes to find the log lines of its failed request.

The id is the trace id of the request's server span (request_tracing.py: every /v1 request, continuing a caller's
`traceparent` or `uber-trace-id`), so it also finds the trace in Jaeger; requests without a span (health probes,
the console) get a random one. It is fixed once per request (kept in the ASGI scope's state), bound to every log
line written while the request runs, and sent back as `X-Correlation-ID`; error responses that hide their cause
name it in their body too.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from opentelemetry import trace
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CORRELATION_HEADER = "X-Correlation-ID"
_STATE_KEY = "correlation_id"


def correlation_id(scope: Scope) -> str:
    """The request's correlation id, made on first use (the same for every later caller of the request)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    existing = state.get(_STATE_KEY)
    if isinstance(existing, str):
        return existing
    span_context = trace.get_current_span().get_span_context()
    value = format(span_context.trace_id, "032x") if span_context.is_valid else uuid.uuid4().hex
    state[_STATE_KEY] = value
    return value


class CorrelationIds:
    """Binds the id to the request's log lines and answers it in `X-Correlation-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = correlation_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[CORRELATION_HEADER] = value
            await send(message)

        with structlog.contextvars.bound_contextvars(correlation_id=value):
            await self.app(scope, receive, send_with_id)
