"""RED metrics of every gRPC method a GrpcServer serves: requests by status code and their duration.

Labels stay bounded: `service` and `method` come from the method path of a registered handler (the protos
define them); a path no servicer registered is answered UNIMPLEMENTED by grpc itself and not counted, so a
caller cannot mint label values. Streaming methods are counted when the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any, TypeAlias

import grpc
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "ragstream_grpc_server_requests_total",
    "gRPC calls served, by method and final status code",
    # grpc_* (the go-grpc-prometheus names): `service` is the scrape target's own label.
    ["grpc_service", "grpc_method", "grpc_code"],
)
REQUEST_SECONDS = Histogram(
    "ragstream_grpc_server_request_seconds",
    "Duration of a gRPC call on the server, to its last response message",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic to the type checker only


def split_method(path: str) -> tuple[str, str]:
    """`/rag.v1.EmbedService/EmbedQuery` -> ("rag.v1.EmbedService", "EmbedQuery")."""
    service, _, method = path.lstrip("/").partition("/")
    return service, method


def status_of(context: Any, error: BaseException | None) -> str:
    """The call's final status name: the code the servicer set or aborted with, else OK, CANCELLED or UNKNOWN."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return grpc.StatusCode.OK.name
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    return grpc.StatusCode.UNKNOWN.name


class _Observation:
    """One call's timer: records its count and duration once, when it ends."""

    def __init__(self, service: str, method: str) -> None:
        self._service, self._method = service, method
        self._started = time.perf_counter()

    def done(self, context: Any, error: BaseException | None) -> None:
        REQUESTS.labels(self._service, self._method, status_of(context, error)).inc()
        REQUEST_SECONDS.labels(self._service, self._method).observe(time.perf_counter() - self._started)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """grpc.aio server interceptor recording `ragstream_grpc_server_*` for every registered method."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, method = split_method(handler_call_details.method)
        return _measured(handler, service, method)


def _measured(handler: Handler, service: str, method: str) -> Handler:
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    names = (service, method)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(partial(_unary, handler.unary_unary, names), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(partial(_unary, handler.stream_unary, names), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(partial(_streaming, handler.unary_stream, names), **codec)
    assert handler.stream_stream is not None  # one of the four is always set
    return grpc.stream_stream_rpc_method_handler(partial(_streaming, handler.stream_stream, names), **codec)


async def _unary(behaviour: Callable[..., Any], names: tuple[str, str], request: Any, context: Any) -> Any:
    observation = _Observation(*names)
    try:
        response = await behaviour(request, context)
    except BaseException as error:  # abort, cancellation and servicer bugs all end the call with a status
        observation.done(context, error)
        raise
    observation.done(context, None)
    return response


async def _streaming(
    behaviour: Callable[..., Any], names: tuple[str, str], request: Any, context: Any
) -> AsyncIterator[Any]:
    observation = _Observation(*names)
    try:
        responses = behaviour(request, context)
        if hasattr(responses, "__aiter__"):
            async for response in responses:
                yield response
        else:  # a coroutine that writes through `context.write`
            await responses
    except BaseException as error:  # GeneratorExit included: the client went away mid-stream
        observation.done(context, asyncio.CancelledError() if isinstance(error, GeneratorExit) else error)
        raise
    observation.done(context, None)
