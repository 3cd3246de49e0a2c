"""The shared ReplyService client against a real grpc.aio server speaking rag.v1 ReplyService on 127.0.0.1:
allowed targets only, a tenant token on every call, a bounded channel cache."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import grpc
import pytest
from prometheus_client import REGISTRY
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_server import insecure_channel
from ragstream_common.reply_client import GrpcReplyClient
from ragstream_common.reply_targets import ReplyTargets
from ragstream_common.service_tokens import bearer_token
from ragstream_generate.adapters.replies import GrpcReplyChannel
from support.tokens import TokenKit

pytestmark = pytest.mark.integration

SLOW = "slow-query"
TENANT = "tenant-a"
KIT = TokenKit()
LOOPBACK = ReplyTargets(["127.0.0.1"])


def _client(targets: ReplyTargets = LOOPBACK, **options: object) -> GrpcReplyClient:
    return GrpcReplyClient(**options, targets=targets, tokens=KIT.minter("retrieve"))  # type: ignore[arg-type]


def _tenant_of(context: grpc.aio.ServicerContext) -> str:
    """The tenant of the call's token, as the gateway would verify it (scope reply, audience gateway)."""
    authorization = dict(context.invocation_metadata() or ()).get("authorization")
    return KIT.verifier().verify(bearer_token(authorization), "gateway", "reply").tenant


class RecordingGateway(services_pb2_grpc.ReplyServiceServicer):  # type: ignore[misc]  # untyped generated base
    """A ReplyService that records what it receives; it stops waiting for queries named `gone-*` and takes
    longer than any test timeout for SLOW."""

    def __init__(self) -> None:
        self.sources: list[services_pb2.SourcesReply] = []
        self.failures: list[services_pb2.QueryFailure] = []
        self.streams: list[list[services_pb2.AnswerFragment]] = []
        self.tenants: list[str] = []

    async def DeliverSources(
        self, request: services_pb2.SourcesReply, context: grpc.aio.ServicerContext
    ) -> services_pb2.ReplyAck:
        self.tenants.append(_tenant_of(context))
        if request.query_id == SLOW:
            await asyncio.sleep(5)
        self.sources.append(request)
        return services_pb2.ReplyAck(accepted=not request.query_id.startswith("gone-"))

    async def DeliverFailure(
        self, request: services_pb2.QueryFailure, context: grpc.aio.ServicerContext
    ) -> services_pb2.ReplyAck:
        self.tenants.append(_tenant_of(context))
        self.failures.append(request)
        return services_pb2.ReplyAck(accepted=True)

    async def StreamAnswer(
        self, request_iterator: AsyncIterator[services_pb2.AnswerFragment], context: grpc.aio.ServicerContext
    ) -> services_pb2.ReplyAck:
        self.tenants.append(_tenant_of(context))
        fragments: list[services_pb2.AnswerFragment] = []
        self.streams.append(fragments)
        async for fragment in request_iterator:
            fragments.append(fragment)
        return services_pb2.ReplyAck(accepted=True)


async def _start_gateway(stack: AsyncExitStack) -> tuple[str, RecordingGateway]:
    gateway = RecordingGateway()
    server = grpc.aio.server()
    services_pb2_grpc.add_ReplyServiceServicer_to_server(gateway, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stack.push_async_callback(server.stop, None)
    return f"127.0.0.1:{port}", gateway


def _closed_port_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


async def test_delivers_sources_and_failures_and_reports_who_still_waits() -> None:
    async with AsyncExitStack() as stack:
        address, gateway = await _start_gateway(stack)
        client = _client(timeout_s=2.0)
        stack.push_async_callback(client.close)
        reply = services_pb2.SourcesReply(query_id="q1")
        assert await client.deliver_sources(address, reply, TENANT) is True
        assert await client.deliver_sources(address, services_pb2.SourcesReply(query_id="gone-q2"), TENANT) is False
        assert await client.deliver_failure(address, services_pb2.QueryFailure(query_id="q3"), TENANT) is True
        assert [r.query_id for r in gateway.sources] == ["q1", "gone-q2"]
        assert [f.query_id for f in gateway.failures] == ["q3"]
        assert client.addresses == [address]  # one channel, reused
        assert gateway.tenants == [TENANT] * 3  # every call carried a reply token for the query's tenant


async def test_an_unreachable_or_slow_gateway_gives_false_within_the_timeout() -> None:
    async with AsyncExitStack() as stack:
        address, _ = await _start_gateway(stack)
        client = _client(timeout_s=0.5)
        stack.push_async_callback(client.close)
        unreachable = _closed_port_address()
        started = time.monotonic()
        assert await client.deliver_sources(unreachable, services_pb2.SourcesReply(query_id="q1"), TENANT) is False
        assert await client.deliver_failure(unreachable, services_pb2.QueryFailure(query_id="q1"), TENANT) is False
        assert time.monotonic() - started < 2 * 0.5 + 0.5
        started = time.monotonic()
        assert await client.deliver_sources(address, services_pb2.SourcesReply(query_id=SLOW), TENANT) is False
        assert 0.4 < time.monotonic() - started < 0.5 + 0.5


async def test_the_least_recently_used_channel_is_closed_beyond_the_bound() -> None:
    async with AsyncExitStack() as stack:
        (a, gateway_a), (b, _), (c, gateway_c) = [await _start_gateway(stack) for _ in range(3)]
        opened: dict[str, grpc.aio.Channel] = {}

        def recording_channel(address: str) -> grpc.aio.Channel:
            opened[address] = insecure_channel(address)
            return opened[address]

        client = _client(timeout_s=2.0, max_channels=2, channel_factory=recording_channel)
        stack.push_async_callback(client.close)
        for address in (a, b, a):  # `a` used last: `b` is now the least recently used
            assert await client.deliver_sources(address, services_pb2.SourcesReply(query_id="q"), TENANT)
        assert await client.deliver_sources(c, services_pb2.SourcesReply(query_id="q"), TENANT)
        assert client.addresses == [a, c]
        assert opened[b].get_state() == grpc.ChannelConnectivity.SHUTDOWN
        assert opened[a].get_state() != grpc.ChannelConnectivity.SHUTDOWN
        # An evicted address gets a fresh channel when a query names it again.
        assert await client.deliver_sources(b, services_pb2.SourcesReply(query_id="q"), TENANT)
        assert client.addresses == [c, b]
        assert len(gateway_a.sources) == 2 and len(gateway_c.sources) == 1


async def test_streams_an_answer_and_survives_its_channel_being_evicted() -> None:
    async with AsyncExitStack() as stack:
        (a, gateway_a), (b, _), (c, _) = [await _start_gateway(stack) for _ in range(3)]
        client = _client(timeout_s=2.0, answer_timeout_s=5.0, max_channels=2)
        stack.push_async_callback(client.close)

        async def fragments(release: asyncio.Event) -> AsyncIterator[services_pb2.AnswerFragment]:
            for token in ("Uhuru ", "Peak"):
                yield services_pb2.AnswerFragment(query_id="q1", token=token)
            await release.wait()
            yield services_pb2.AnswerFragment(query_id="q1", done=queries_pb2.AnswerProduced(query_id="q1"))

        released = asyncio.Event()
        released.set()
        assert await client.stream_answer(a, "q1", fragments(released), TENANT) is True
        assert [f.WhichOneof("event") for f in gateway_a.streams[0]] == ["token", "token", "done"]

        # A stream whose channel is evicted mid-answer ends as False, never as an exception.
        held = asyncio.Event()
        streaming = asyncio.create_task(client.stream_answer(a, "q2", fragments(held), TENANT))
        await asyncio.sleep(0.2)
        for address in (b, c):
            assert await client.deliver_sources(address, services_pb2.SourcesReply(query_id="q"), TENANT)
        assert await asyncio.wait_for(streaming, 5) is False
        assert await client.stream_answer(_closed_port_address(), "q3", fragments(released), TENANT) is False


async def test_generate_streams_tokens_through_the_shared_client() -> None:
    async with AsyncExitStack() as stack:
        address, gateway = await _start_gateway(stack)
        client = _client(answer_timeout_s=5.0)
        stack.push_async_callback(client.close)
        stream = GrpcReplyChannel(client).open(address, "q1", TENANT)
        for token in ("Uhuru", " Peak"):
            await stream.token(token)
        await stream.done(queries_pb2.AnswerProduced(query_id="q1", answer="Uhuru Peak"))
        received = gateway.streams[0]
        assert "".join(f.token for f in received if f.WhichOneof("event") == "token") == "Uhuru Peak"
        assert received[-1].done.answer == "Uhuru Peak"
        # An unreachable gateway loses only the live stream: `done` returns normally.
        lost = GrpcReplyChannel(client).open(_closed_port_address(), "q2", TENANT)
        await lost.token("x")
        await lost.done(queries_pb2.AnswerProduced(query_id="q2"))


class ConnectionRecorder:
    """A plain TCP listener on 127.0.0.1 that records every connection made to it (and speaks no gRPC)."""

    def __init__(self) -> None:
        self.connections = 0
        self.address = ""

    async def start(self, stack: AsyncExitStack) -> ConnectionRecorder:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        stack.push_async_callback(server.wait_closed)
        stack.callback(server.close)
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


def _refused(method: str) -> float:
    return REGISTRY.get_sample_value("ragstream_reply_targets_refused_total", {"method": method}) or 0.0


async def test_a_forged_reply_to_is_never_dialled_and_is_counted() -> None:
    async with AsyncExitStack() as stack:
        gateway_address, gateway = await _start_gateway(stack)
        forged = await ConnectionRecorder().start(stack)
        client = _client(ReplyTargets([gateway_address]), timeout_s=1.0, answer_timeout_s=1.0)
        stack.push_async_callback(client.close)
        before = {method: _refused(method) for method in ("DeliverSources", "DeliverFailure", "StreamAnswer")}

        async def fragments() -> AsyncIterator[services_pb2.AnswerFragment]:
            yield services_pb2.AnswerFragment(query_id="q1", token="secret answer")

        for target in (forged.address, "dns:///" + forged.address, "169.254.169.254:80"):
            assert await client.deliver_sources(target, services_pb2.SourcesReply(query_id="q1"), TENANT) is False
            assert await client.deliver_failure(target, services_pb2.QueryFailure(query_id="q1"), TENANT) is False
            assert await client.stream_answer(target, "q1", fragments(), TENANT) is False
        await asyncio.sleep(0.2)
        assert forged.connections == 0 and client.addresses == []
        assert {method: _refused(method) - before[method] for method in before} == dict.fromkeys(before, 3.0)
        # The allowed gateway is still served, and the listener does record a client that is allowed to dial it.
        assert await client.deliver_sources(gateway_address, services_pb2.SourcesReply(query_id="q2"), TENANT)
        assert [r.query_id for r in gateway.sources] == ["q2"]
        control = _client(ReplyTargets([forged.address]), timeout_s=1.0)
        stack.push_async_callback(control.close)
        assert await control.deliver_sources(forged.address, services_pb2.SourcesReply(query_id="q3"), TENANT) is False
        assert forged.connections >= 1


async def test_no_reply_goes_out_without_a_tenant_or_an_allowlist() -> None:
    async with AsyncExitStack() as stack:
        address, gateway = await _start_gateway(stack)
        client = _client(timeout_s=1.0)
        stack.push_async_callback(client.close)
        assert await client.deliver_sources(address, services_pb2.SourcesReply(query_id="q1"), "") is False
        closed = _client(ReplyTargets([]), timeout_s=1.0)
        stack.push_async_callback(closed.close)
        assert await closed.deliver_sources(address, services_pb2.SourcesReply(query_id="q1"), TENANT) is False
        assert gateway.sources == [] and client.addresses == [] and closed.addresses == []
