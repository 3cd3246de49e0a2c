"""What the hops of the query path cost at the least on this machine, measured beside the latency benchmark.

- Kafka hop: the services' own EventPublisher in this process -> EventConsumer in a child process (acks=all,
  idempotent, manual commits), one QueryRequested at a time, from send to handler.
- gRPC round trip: a unary grpc.health.v1 Check over loopback to an in-process grpc.aio server.
- HTTP round trip: GET /healthz on the gateway through the benchmark's own client.

floor_ms = 3 Kafka hops + 1 gRPC round trip + 1 HTTP round trip, at p50: the transport that even a service with
no overhead of its own would add to the in-process time. `floor_ratio_p50` = (inproc p50 + floor) / inproc p50
is the best ratio the query path could reach here.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from metrics import percentile

if TYPE_CHECKING:
    from ragstream_common.kafka_settings import KafkaSettings

HOPS = 3
SAMPLES = 300
PAUSE_S = 0.01  # between samples, so each one starts from idle as a lone query does


async def kafka_hop_ms(kafka: KafkaSettings, samples: int = SAMPLES) -> list[float]:
    """Publish from this process, handle in a child process (as from one service to the next); each latency is
    the child's handler wall time minus the send time the event carries."""
    from rag.v1 import queries_pb2
    from ragstream_common.kafka import EventPublisher, OutgoingEvent
    from ragstream_common.kafka.bootstrap import ensure_topics
    from ragstream_common.kafka.topics import TopicSpec

    spec = TopicSpec(f"bench.transport-floor.{uuid.uuid4().hex[:8]}.v1", partitions=1, retention_ms=600_000)
    await ensure_topics(kafka, (spec, TopicSpec(spec.dlq, partitions=1, retention_ms=600_000)))
    # The child signs in as the same (super) user: its own topic and group are in nobody's grants.
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "consume", spec.name, stdout=asyncio.subprocess.PIPE, env=_child_env(kafka)
    )
    assert child.stdout is not None
    publisher = EventPublisher(kafka, source="bench/transport-floor")
    await publisher.start()
    try:
        if (await asyncio.wait_for(child.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the consumer process did not start")
        latencies = []
        for n in range(samples + 20):  # the first 20 warm up the connections and the group
            message = queries_pb2.QueryRequested(query_id=f"q{n}", tenant_id="bench", question=repr(time.time()))
            await publisher.publish(OutgoingEvent(spec.name, f"q{n}", message))
            latency = float(await asyncio.wait_for(child.stdout.readline(), 30))
            if n >= 20:
                latencies.append(latency)
            await asyncio.sleep(PAUSE_S)
        return latencies
    finally:
        await publisher.stop()
        child.terminate()
        await child.wait()


def _child_env(kafka: KafkaSettings) -> dict[str, str]:
    """The KAFKA_* variables of `kafka` (the password through the environment, never argv)."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    env["KAFKA_SECURITY_PROTOCOL"] = kafka.security_protocol
    for name, value in (("KAFKA_SASL_MECHANISM", kafka.sasl_mechanism), ("KAFKA_SASL_USERNAME", kafka.sasl_username)):
        if value is not None:
            env[name] = value
    if kafka.sasl_password is not None:
        env["KAFKA_SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    return env


async def _consume_and_report(topic: str) -> None:
    """The child: the services' EventConsumer; prints each event's send-to-handler time (ms) on stdout."""
    from ragstream_common.kafka import ConsumerOptions, EventConsumer, EventPublisher
    from ragstream_common.kafka_settings import KafkaSettings

    kafka = KafkaSettings()  # KAFKA_* from the parent
    dead_letters = EventPublisher(kafka, source="bench/transport-floor")
    await dead_letters.start()

    async def handler(batch: Any) -> None:
        handled = time.time()
        for envelope in batch:
            print(f"{(handled - float(envelope.message.question)) * 1000:.3f}", flush=True)

    consumer = EventConsumer(kafka, ConsumerOptions(group_id=topic, topics=(topic,)), handler, dead_letters)
    await consumer.start()
    print("ready", flush=True)  # the first events wait for the group to form: the warm-up absorbs that
    await consumer.run(asyncio.Event())


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


async def transport_floor(kafka: KafkaSettings, client: httpx.AsyncClient) -> dict[str, float]:
    hop = percentile(await kafka_hop_ms(kafka), 50)
    grpc_rtt = percentile(await grpc_roundtrip_ms(), 50)
    http_rtt = percentile(await http_roundtrip_ms(client), 50)
    return {
        "kafka_hop_p50_ms": round(hop, 2),
        "grpc_roundtrip_p50_ms": round(grpc_rtt, 2),
        "http_roundtrip_p50_ms": round(http_rtt, 2),
        "floor_ms": round(HOPS * hop + grpc_rtt + http_rtt, 2),
    }


if __name__ == "__main__" and sys.argv[1:2] == ["consume"]:
    from ragstream_common.service import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory("uvloop")) as runner:
        runner.run(_consume_and_report(sys.argv[2]))
