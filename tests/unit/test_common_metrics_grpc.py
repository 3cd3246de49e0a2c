"""The gRPC RED interceptor: every registered method counted once by status code and timed, streams at their end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from ragstream_common.grpc_metrics import MetricsInterceptor, split_method, status_of

pytestmark = pytest.mark.unit

SERVICE = "rag.v1.TestService"


class CallContext:
    """The part of grpc.aio.ServicerContext the interceptor reads: the code the servicer set or aborted with."""

    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code = code
        raise grpc.aio.AbortError(details)


class Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def requests(method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("ragstream_grpc_server_requests_total", labels) or 0.0


def timed(method: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method}
    return REGISTRY.get_sample_value("ragstream_grpc_server_request_seconds_count", labels) or 0.0


async def intercepted(method: str, handler: Any) -> Any:
    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    return await MetricsInterceptor().intercept_service(continuation, Details(f"/{SERVICE}/{method}"))


def test_method_path_splits_into_service_and_method() -> None:
    assert split_method("/rag.v1.EmbedService/Embed") == ("rag.v1.EmbedService", "Embed")


def test_status_is_the_code_set_else_ok_cancelled_or_unknown() -> None:
    context = CallContext()
    assert status_of(context, None) == "OK"
    assert status_of(context, RuntimeError("bug")) == "UNKNOWN"
    context._code = grpc.StatusCode.NOT_FOUND
    assert status_of(context, grpc.aio.AbortError()) == "NOT_FOUND"


async def test_unary_calls_counted_by_code_and_timed() -> None:
    async def echo(request: str, context: CallContext) -> str:
        if request == "bad":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
        if request == "bug":
            raise RuntimeError("servicer bug")
        return request

    handler = await intercepted("Echo", grpc.unary_unary_rpc_method_handler(echo))
    ok, invalid, unknown, count = (
        requests("Echo", "OK"),
        requests("Echo", "INVALID_ARGUMENT"),
        requests("Echo", "UNKNOWN"),
        timed("Echo"),
    )
    assert await handler.unary_unary("hi", CallContext()) == "hi"
    with pytest.raises(grpc.aio.AbortError):
        await handler.unary_unary("bad", CallContext())
    with pytest.raises(RuntimeError):
        await handler.unary_unary("bug", CallContext())
    assert requests("Echo", "OK") == ok + 1
    assert requests("Echo", "INVALID_ARGUMENT") == invalid + 1
    assert requests("Echo", "UNKNOWN") == unknown + 1
    assert timed("Echo") == count + 3


async def test_server_streams_counted_when_they_end() -> None:
    async def count_to(request: int, context: CallContext) -> AsyncIterator[int]:
        for number in range(request):
            yield number

    handler = await intercepted("CountTo", grpc.unary_stream_rpc_method_handler(count_to))
    before = requests("CountTo", "OK")
    stream = handler.unary_stream(3, CallContext())
    assert await anext(stream) == 0
    assert requests("CountTo", "OK") == before  # still streaming
    assert [n async for n in stream] == [1, 2]
    assert requests("CountTo", "OK") == before + 1


async def test_writer_style_streams_and_client_streams_are_counted() -> None:
    written: list[int] = []

    async def write_two(request: int, context: CallContext) -> None:
        written.extend([request, request])

    async def total(requests_in: AsyncIterator[int], context: CallContext) -> int:
        return sum([n async for n in requests_in])

    writer = await intercepted("WriteTwo", grpc.unary_stream_rpc_method_handler(write_two))
    summing = await intercepted("Total", grpc.stream_unary_rpc_method_handler(total))
    before_write, before_total = requests("WriteTwo", "OK"), requests("Total", "OK")

    async def numbers() -> AsyncIterator[int]:
        for n in (1, 2, 3):
            yield n

    assert [r async for r in writer.unary_stream(7, CallContext())] == []
    assert written == [7, 7]
    assert await summing.stream_unary(numbers(), CallContext()) == 6
    assert requests("WriteTwo", "OK") == before_write + 1
    assert requests("Total", "OK") == before_total + 1


async def test_a_stream_the_client_abandons_counts_as_cancelled() -> None:
    async def forever(request: int, context: CallContext) -> AsyncIterator[int]:
        while True:
            yield request

    handler = await intercepted("Forever", grpc.unary_stream_rpc_method_handler(forever))
    before = requests("Forever", "CANCELLED")
    stream = handler.unary_stream(1, CallContext())
    assert await anext(stream) == 1
    await stream.aclose()
    assert requests("Forever", "CANCELLED") == before + 1


async def test_unregistered_methods_are_left_to_grpc_and_not_counted() -> None:
    assert await intercepted("Nope", None) is None
