"""The security suite's gateway (package-scoped, over the session's Kafka and Postgres) and its principals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from fastapi import FastAPI
from ragstream_common.kafka_settings import KafkaSettings

from security.gateway import build_app, open_gateway_deps, security_settings
from security.world import World, build_world


@pytest.fixture(scope="package")
async def gateway_app(
    service_database_urls: dict[str, str], kafka_principals: dict[str, KafkaSettings]
) -> AsyncIterator[FastAPI]:
    settings = security_settings(service_database_urls, kafka_principals["gateway"])
    async with AsyncExitStack() as stack:
        yield build_app(settings, await open_gateway_deps(settings, stack))


@pytest.fixture(scope="package")
async def world(gateway_app: FastAPI) -> World:
    return await build_world(gateway_app)
