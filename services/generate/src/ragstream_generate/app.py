"""Generate service composition root: answer backend, reply channel to gateways, Kafka consumer, gRPC API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from functools import partial

from rag.v1 import services_pb2_grpc
from ragstream_common.grpc_server import grpc_channel
from ragstream_common.kafka import ConsumerOptions
from ragstream_common.kafka.routing import RoutedEventSink
from ragstream_common.kafka.topics import QUERIES_RETRIEVED
from ragstream_common.reply_client import GrpcReplyClient
from ragstream_common.service import run_service, serve_while_healthy, start_consumer, start_grpc, start_publisher

from ragstream_generate.adapters.grpc_api import GenerateServicer
from ragstream_generate.adapters.replies import GrpcReplyChannel
from ragstream_generate.adapters.routes import GENERATE_ROUTES
from ragstream_generate.backends.base import AnswerBackend
from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
from ragstream_generate.backends.openai_chat import OpenAIChatBackend, OpenAIChatConfig
from ragstream_generate.config import GenerateSettings
from ragstream_generate.handlers import answer_batch


def build_backend(settings: GenerateSettings) -> AnswerBackend:
    extractive = ExtractiveBackend(ExtractiveConfig(max_sentences=settings.max_sentences))
    if settings.backend == "extractive":
        return extractive
    config = OpenAIChatConfig(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        timeout_s=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
    )
    return OpenAIChatBackend(config, fallback=extractive)


async def start(settings: GenerateSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    backend = build_backend(settings)
    if isinstance(backend, OpenAIChatBackend):
        stack.push_async_callback(backend.aclose)
    replies = GrpcReplyClient(
        settings.reply_timeout_s,
        settings.answer_stream_timeout_s,
        settings.reply_max_channels,
        partial(grpc_channel, tls=settings.grpc_tls),
        targets=settings.reply_targets.targets(),
        tokens=settings.tokens.required_minter(settings.service_name),
    )
    stack.push_async_callback(replies.close)
    publisher = await start_publisher(stack, settings)
    server = await start_grpc(
        stack,
        settings,
        ["rag.v1.GenerateService"],
        [partial(services_pb2_grpc.add_GenerateServiceServicer_to_server, GenerateServicer(backend))],
        verifier=settings.tokens.verifier(),
        tls=settings.grpc_tls,
    )
    options = ConsumerOptions(
        group_id=settings.group_id,
        topics=(QUERIES_RETRIEVED.name,),
        max_batch=settings.max_batch,
    )
    handler = partial(
        answer_batch,
        backend=backend,
        replies=GrpcReplyChannel(replies),
        sink=RoutedEventSink(publisher, GENERATE_ROUTES),
    )
    consumer = await start_consumer(stack, settings, options, handler, publisher)
    await serve_while_healthy(stack, settings, server, consumers=[consumer])
    return [consumer.run(stop)]


def main() -> None:
    run_service(GenerateSettings, start)


if __name__ == "__main__":
    main()
