"""What the hops of the query path cost at the least on this machine, measured beside the latency benchmark.

- Kafka hop: the services' own EventPublisher -> EventConsumer (acks=all, idempotent, manual commits), one
  QueryRequested at a time, send until the handler runs; producer and consumer share one process, which makes
  this a lower bound (a hop between two processes costs a little more).
- gRPC round trip: a unary grpc.health.v1 Check over loopback to an in-process grpc.aio server.
- HTTP round trip: GET /healthz on the gateway through the benchmark's own client.

floor_ms = 3 Kafka hops + 1 gRPC round trip + 1 HTTP round trip, at p50: the transport that even a service with
no overhead of its own would add to the in-process time. `floor_ratio_p50` = (inproc p50 + floor) / inproc p50
is the best ratio the query path could reach here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from metrics import percentile

HOPS = 3
SAMPLES = 300
PAUSE_S = 0.01  # between samples, so each one starts from idle as a lone query does


async def kafka_hop_ms(bootstrap: str, samples: int = SAMPLES) -> list[float]:
    from rag.v1 import queries_pb2
    from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher, OutgoingEvent
    from ragstream_common.kafka.bootstrap import ensure_topics
    from ragstream_common.kafka.topics import TopicSpec

    spec = TopicSpec(f"bench.transport-floor.{uuid.uuid4().hex[:8]}.v1", partitions=1, retention_ms=600_000)
    await ensure_topics(bootstrap, (spec, TopicSpec(spec.dlq, partitions=1, retention_ms=600_000)))
    publisher = EventPublisher(bootstrap, source="bench/transport-floor")
    await publisher.start()
    arrivals: asyncio.Queue[float] = asyncio.Queue()

    async def handler(batch: Any) -> None:
        for _ in batch:
            arrivals.put_nowait(time.perf_counter())

    consumer = EventConsumer(bootstrap, ConsumerOptions(group_id=spec.name, topics=(spec.name,)), handler, publisher)
    await consumer.start()
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    try:
        latencies = []
        for n in range(samples + 20):  # the first 20 warm up the connections and the group
            message = queries_pb2.QueryRequested(query_id=f"q{n}", tenant_id="bench", question="a lone question")
            sent = time.perf_counter()
            await publisher.publish(OutgoingEvent(spec.name, f"q{n}", message))
            arrived = await asyncio.wait_for(arrivals.get(), 30)
            if n >= 20:
                latencies.append((arrived - sent) * 1000)
            await asyncio.sleep(PAUSE_S)
        return latencies
    finally:
        stop.set()
        await running
        await consumer.stop()
        await publisher.stop()


async def grpc_roundtrip_ms(samples: int = SAMPLES) -> list[float]:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            latencies = []
            for n in range(samples + 20):
                started = time.perf_counter()
                await stub.Check(health_pb2.HealthCheckRequest())
                if n >= 20:
                    latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(PAUSE_S)
            return latencies
    finally:
        await server.stop(None)


async def http_roundtrip_ms(client: httpx.AsyncClient, samples: int = SAMPLES) -> list[float]:
    latencies = []
    for n in range(samples + 20):
        started = time.perf_counter()
        (await client.get("/healthz")).raise_for_status()
        if n >= 20:
            latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(PAUSE_S)
    return latencies


async def transport_floor(bootstrap: str, client: httpx.AsyncClient) -> dict[str, float]:
    hop = percentile(await kafka_hop_ms(bootstrap), 50)
    grpc_rtt = percentile(await grpc_roundtrip_ms(), 50)
    http_rtt = percentile(await http_roundtrip_ms(client), 50)
    return {"kafka_hop_p50_ms": round(hop, 2), "grpc_roundtrip_p50_ms": round(grpc_rtt, 2),
            "http_roundtrip_p50_ms": round(http_rtt, 2), "floor_ms": round(HOPS * hop + grpc_rtt + http_rtt, 2)}
