"""gRPC server with grpc.health.v1, tracing, RED metrics (grpc_metrics) and token interceptors, optional TLS
and a clean drain on shutdown.

TLS is for deployments without a mesh (compose, a cluster without Istio): GRPC_TLS_CERT_FILE and
GRPC_TLS_KEY_FILE make servers serve TLS only, GRPC_TLS_CA_FILE makes clients dial TLS and trust that CA.
Inside Istio both stay unset: the sidecars do mTLS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor
from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragstream_common.grpc_auth import TokenAuthInterceptor
from ragstream_common.grpc_metrics import MetricsInterceptor
from ragstream_common.service_tokens import TokenVerifier

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
]


class GrpcTlsSettings(BaseSettings):
    """GRPC_TLS_* (shared by every service): off unless set."""

    model_config = SettingsConfigDict(env_prefix="GRPC_TLS_", extra="ignore")

    # Server side: this certificate (chain) and its key, both PEM.
    cert_file: Path | None = None
    key_file: Path | None = None
    # Client side: dial TLS and trust this CA bundle (PEM).
    ca_file: Path | None = None
    # The name the server certificate must carry when a client dials an address (e.g. a health probe on
    # 127.0.0.1); empty: the target's host.
    server_name: str = ""

    @model_validator(mode="after")
    def _cert_with_key(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE go together")
        return self

    @property
    def serves_tls(self) -> bool:
        return self.cert_file is not None

    @property
    def dials_tls(self) -> bool:
        return self.ca_file is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.cert_file is not None and self.key_file is not None
        pair = (self.key_file.read_bytes(), self.cert_file.read_bytes())
        return grpc.ssl_server_credentials([pair])

    def channel_credentials(self) -> grpc.ChannelCredentials:
        assert self.ca_file is not None
        return grpc.ssl_channel_credentials(root_certificates=self.ca_file.read_bytes())

    def channel_options(self) -> list[tuple[str, object]]:
        name = [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
        return [*CHANNEL_OPTIONS, *name]


class GrpcServer:
    """Serves the given servicers plus health; every named service starts NOT_SERVING until `mark_serving`, and
    readiness (`ragstream_common.readiness`) flips it back with `mark_not_serving` while a dependency is down.

    Every rag.v1 method requires a bearer token `verifier` accepts (grpc_auth); without a verifier none is
    accepted. grpc.health.v1 stays open to probes. With `tls` serving TLS, plaintext clients are refused.
    """

    def __init__(
        self,
        host: str,
        port: int,
        service_names: Sequence[str],
        *,
        verifier: TokenVerifier | None = None,
        tls: GrpcTlsSettings | None = None,
    ) -> None:
        tracing = aio_server_interceptor()  # type: ignore[no-untyped-call]  # third-party: unannotated factory
        auth = TokenAuthInterceptor(verifier or TokenVerifier({}))
        # Metrics outside auth: refused calls count as UNAUTHENTICATED / PERMISSION_DENIED.
        interceptors = [tracing, MetricsInterceptor(), auth]
        self._server = grpc.aio.server(interceptors=interceptors, options=CHANNEL_OPTIONS)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names = ("", *service_names)
        if tls is not None and tls.serves_tls:
            self.port = self._server.add_secure_port(f"{host}:{port}", tls.server_credentials())
        else:
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


def grpc_channel(target: str, tls: GrpcTlsSettings | None = None) -> grpc.aio.Channel:
    """A traced client channel: TLS when `tls` names a CA, plaintext otherwise."""
    if tls is None or not tls.dials_tls:
        return insecure_channel(target)
    interceptors = aio_client_interceptors()  # type: ignore[no-untyped-call]  # third-party: unannotated factory
    credentials = tls.channel_credentials()
    return grpc.aio.secure_channel(target, credentials, options=tls.channel_options(), interceptors=interceptors)


async def check_health(
    target: str, service: str = "", timeout_s: float = 2.0, tls: GrpcTlsSettings | None = None
) -> str:
    """`grpc_health_probe` in Python: the status name of `service` at `target` (over TLS when `tls` dials it).
    Untraced: probes would drown the traces."""
    if tls is not None and tls.dials_tls:
        probe = grpc.aio.secure_channel(target, tls.channel_credentials(), options=tls.channel_options())
    else:
        probe = grpc.aio.insecure_channel(target)
    async with probe as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        # grpc_health ships no py.typed, so its messages are Any to mypy: pin the result type here.
        status_name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return status_name
