"""gRPC server with grpc.health.v1, tracing interceptors and a clean drain on shutdown."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
]


class GrpcServer:
    """Serves the given servicers plus health; every named service starts NOT_SERVING until `mark_serving`, and
    readiness (`ragstream_common.readiness`) flips it back with `mark_not_serving` while a dependency is down."""

    def __init__(self, host: str, port: int, service_names: Sequence[str]) -> None:
        interceptor = aio_server_interceptor()  # type: ignore[no-untyped-call]  # third-party: unannotated factory
        self._server = grpc.aio.server(interceptors=[interceptor], options=CHANNEL_OPTIONS)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names = ("", *service_names)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.address = f"{host}:{self.port}"

    def add(self, register: Callable[[grpc.aio.Server], None]) -> None:
        register(self._server)

    async def start(self) -> None:
        await self._server.start()
        for name in self._service_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def mark_serving(self) -> None:
        await self.set_serving(True)

    async def mark_not_serving(self) -> None:
        await self.set_serving(False)

    async def set_serving(self, serving: bool) -> None:
        """Every named service (and the server as a whole) SERVING or NOT_SERVING; ignored once draining."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._service_names:
            await self._health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)


def insecure_channel(target: str) -> grpc.aio.Channel:
    """A client channel that propagates trace context (mTLS comes from the Istio sidecar in production)."""
    interceptors = aio_client_interceptors()  # type: ignore[no-untyped-call]  # third-party: unannotated factory
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)


async def check_health(target: str, service: str = "", timeout_s: float = 2.0) -> str:
    """`grpc_health_probe` in Python: the status name of `service` at `target`."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        # grpc_health ships no py.typed, so its messages are Any to mypy: pin the result type here.
        status_name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return status_name
