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
from ragstream_generate.adapters.search_grpc import GrpcSearcher
from ragstream_generate.agent.answering import AgentAnswerer, AgentConfig
from ragstream_generate.agent.llm_planner import LLMPlanner
from ragstream_generate.agent.ports import Searcher
from ragstream_generate.agent.rules_planner import ModelFreePlanner, RulesPlannerConfig
from ragstream_generate.backends.base import AnswerBackend
from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
from ragstream_generate.backends.openai_chat import OpenAIChatBackend, OpenAIChatConfig
from ragstream_generate.config import GenerateSettings
from ragstream_generate.handlers import answer_batch


def openai_config(settings: GenerateSettings) -> OpenAIChatConfig:
    return OpenAIChatConfig(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.openai_model,
        timeout_s=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
    )


def build_backend(settings: GenerateSettings) -> AnswerBackend:
    extractive = ExtractiveBackend(ExtractiveConfig(max_sentences=settings.max_sentences))
    if settings.backend == "extractive":
        return extractive
    return OpenAIChatBackend(openai_config(settings), fallback=extractive)


def build_agent(
    settings: GenerateSettings, backend: AnswerBackend, searcher: Searcher, stack: AsyncExitStack
) -> AgentAnswerer:
    """The agent over `searcher`: the model-free planner, or the LLM planner falling back to it."""
    rules = ModelFreePlanner(
        RulesPlannerConfig(evidence_k=settings.agent_evidence_k, expansion=settings.agent_expansion)
    )
    config = AgentConfig(
        default_steps=settings.agent_default_steps,
        max_steps=settings.agent_max_steps,
        evidence_k=settings.agent_evidence_k,
        step_timeout_s=settings.agent_step_timeout_s,
        answer_reserve_s=settings.agent_answer_reserve_s,
        token_budget=settings.agent_token_budget or None,
        tenant_token_budgets=settings.agent_tenant_token_budgets,
        extractive=ExtractiveConfig(max_sentences=settings.max_sentences),
    )
    if settings.agent_planner == "rules":
        return AgentAnswerer(lambda _state: rules, searcher, backend, config)
    llm = LLMPlanner(openai_config(settings))
    stack.push_async_callback(llm.aclose)
    return AgentAnswerer(llm.run_for, searcher, backend, config, fallback=lambda _state: rules)


async def start(settings: GenerateSettings, stack: AsyncExitStack, stop: asyncio.Event) -> list[Awaitable[None]]:
    backend = build_backend(settings)
    if isinstance(backend, OpenAIChatBackend):
        stack.push_async_callback(backend.aclose)
    minter = settings.tokens.required_minter(settings.service_name)
    replies = GrpcReplyClient(
        settings.reply_timeout_s,
        settings.answer_stream_timeout_s,
        settings.reply_max_channels,
        partial(grpc_channel, tls=settings.grpc_tls),
        targets=settings.reply_targets.targets(),
        tokens=minter,
    )
    stack.push_async_callback(replies.close)
    searcher = GrpcSearcher(settings.retrieve_address, minter, partial(grpc_channel, tls=settings.grpc_tls))
    stack.push_async_callback(searcher.close)
    agent = build_agent(settings, backend, searcher, stack)
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
        agent=agent,
    )
    consumer = await start_consumer(stack, settings, options, handler, publisher)
    await serve_while_healthy(stack, settings, server, consumers=[consumer])
    return [consumer.run(stop)]


def main() -> None:
    run_service(GenerateSettings, start)


if __name__ == "__main__":
    main()
