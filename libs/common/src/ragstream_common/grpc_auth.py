"""Bearer tokens on the rag.v1 gRPC services (server interceptor) and on the calls services make (metadata).

Every method of a rag.v1 service needs `authorization: Bearer <token>` addressed to the serving service with
that service's scope (METHOD_RULES); grpc.health.v1 and reflection stay open. A refused call ends with
UNAUTHENTICATED (no valid token: missing, malformed, expired, badly signed, unknown key) or PERMISSION_DENIED
(a valid token without the audience or scope), counted and logged without the token. An admitted call runs
with its VerifiedToken in `current_caller()`: servicers take the tenant from there, never from the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeAlias

import grpc
from prometheus_client import Counter

from ragstream_common.logs import get_logger
from ragstream_common.service_tokens import (
    SCOPE_EMBED,
    SCOPE_GENERATE,
    SCOPE_REPLY,
    SCOPE_SEARCH,
    Audience,
    TokenError,
    TokenVerifier,
    VerifiedToken,
    WrongScope,
    bearer_token,
)

log = get_logger(__name__)

PROTECTED_PREFIX = "rag.v1."
# gRPC service -> (the audience its tokens must name, the scope they must carry).
METHOD_RULES: dict[str, tuple[Audience, str]] = {
    "rag.v1.EmbedService": ("embed", SCOPE_EMBED),
    "rag.v1.RetrieveService": ("retrieve", SCOPE_SEARCH),
    "rag.v1.GenerateService": ("generate", SCOPE_GENERATE),
    "rag.v1.ReplyService": ("gateway", SCOPE_REPLY),
}
REFUSED = Counter("ragstream_grpc_auth_refused_total", "gRPC calls refused for their token", ["service", "reason"])

# The admitted call's service and token, set by the interceptor for the task that serves the call.
_caller: ContextVar[tuple[str, VerifiedToken] | None] = ContextVar("ragstream_grpc_caller", default=None)
Metadata = tuple[tuple[str, str], ...]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic to the type checker only
Admit = Callable[[grpc.aio.ServicerContext[Any, Any]], Awaitable[tuple[str, VerifiedToken]]]


def current_caller() -> VerifiedToken:
    """The verified token of the rag.v1 call being served; only the interceptor sets it."""
    call = _caller.get()
    if call is None:
        raise RuntimeError("no verified caller: this code runs outside an authenticated rag.v1 call")
    return call[1]


def bearer_metadata(token: str) -> Metadata:
    """Call metadata carrying `token` (plaintext channels inside the mesh take no call credentials)."""
    return (("authorization", f"Bearer {token}"),)


async def tenant_of_call(requested: str, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's tenant; a request field naming another tenant is refused (PERMISSION_DENIED)."""
    tenant = current_caller().tenant
    if requested and requested != tenant:
        call = _caller.get()
        REFUSED.labels(_service_label(call[0] if call else ""), "tenant_mismatch").inc()
        log.warning("grpc call refused", reason="tenant_mismatch", tenant_id=tenant, requested=requested[:64])
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "tenant_id does not match the token's tenant")
    return tenant


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.lstrip("/").startswith(PROTECTED_PREFIX):
            return handler
        token = bearer_token(_header(handler_call_details.invocation_metadata, "authorization"))
        return _guarded(handler, partial(self._admit, method, token))

    async def _admit(
        self, method: str, token: str | None, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[str, VerifiedToken]:
        service = method.lstrip("/").partition("/")[0]
        try:
            rule = METHOD_RULES.get(service)
            if rule is None:
                raise WrongScope(f"no token admits {service}")
            return service, self._verifier.verify(token, *rule)
        except TokenError as exc:
            REFUSED.labels(_service_label(service), exc.reason).inc()
            log.warning("grpc call refused", method=method, reason=exc.reason, detail=str(exc))
            code = grpc.StatusCode.PERMISSION_DENIED if exc.denied else grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(exc))
            raise  # not reached: abort raises


def _service_label(service: str) -> str:
    """A bounded label: the known services by name, anything else as "other"."""
    return service.removeprefix(PROTECTED_PREFIX) if service in METHOD_RULES else "other"


def _header(metadata: Any, name: str) -> str | None:
    for key, value in metadata or ():
        if key == name and isinstance(value, str):
            return value
    return None


def _guarded(handler: Handler, admit: Admit) -> Handler:
    """`handler` with the token check before its behaviour. Each call runs in a task of its own (grpc.aio), so
    the caller set here is that call's alone."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(partial(_unary, handler.unary_unary, admit), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(partial(_unary, handler.stream_unary, admit), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(partial(_streaming, handler.unary_stream, admit), **codec)
    assert handler.stream_stream is not None  # one of the four is always set
    return grpc.stream_stream_rpc_method_handler(partial(_streaming, handler.stream_stream, admit), **codec)


async def _unary(behaviour: Callable[..., Any], admit: Admit, request: Any, context: Any) -> Any:
    _caller.set(await admit(context))
    return await behaviour(request, context)


async def _streaming(behaviour: Callable[..., Any], admit: Admit, request: Any, context: Any) -> AsyncIterator[Any]:
    _caller.set(await admit(context))
    responses = behaviour(request, context)
    if hasattr(responses, "__aiter__"):
        async for response in responses:
            yield response
    else:  # a coroutine that writes through `context.write`
        await responses
