"""The certificates compose_secrets makes for docker-compose.tls.yml work with real gRPC: a server serving one
service's certificate answers a client that trusts the compose CA, at the service's name (as its callers dial it)
and at 127.0.0.1 (as its health probe does); a client trusting another CA is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from ragstream_common.grpc_server import GrpcServer, GrpcTlsSettings, check_health
from ragstream_devstack.compose_tls import new_ca, write_tls

pytestmark = pytest.mark.integration


@pytest.fixture
async def embed_like_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    write_tls(tmp_path, hosts=["embed"])
    tls = GrpcTlsSettings(cert_file=tmp_path / "embed.crt", key_file=tmp_path / "embed.key")
    server = GrpcServer("127.0.0.1", 0, ["rag.v1.EmbedService"], tls=tls)
    await server.start()
    await server.mark_serving()
    yield server.port, tmp_path
    await server.stop(0.5)


async def test_probe_at_loopback_trusting_the_compose_ca_gets_through(embed_like_server: tuple[int, Path]) -> None:
    port, directory = embed_like_server
    tls = GrpcTlsSettings(ca_file=directory / "ca.crt")
    assert await check_health(f"127.0.0.1:{port}", timeout_s=5, tls=tls) == "SERVING"


async def test_callers_dialling_the_service_name_verify_it(embed_like_server: tuple[int, Path]) -> None:
    port, directory = embed_like_server
    # What `embed:50052` looks like from retrieve: the certificate must name `embed`; a name it lacks fails.
    named = GrpcTlsSettings(ca_file=directory / "ca.crt", server_name="embed")
    assert await check_health(f"127.0.0.1:{port}", timeout_s=5, tls=named) == "SERVING"
    wrong = GrpcTlsSettings(ca_file=directory / "ca.crt", server_name="retrieve")
    with pytest.raises(grpc.aio.AioRpcError):
        await check_health(f"127.0.0.1:{port}", timeout_s=5, tls=wrong)


async def test_a_client_trusting_another_ca_is_refused(embed_like_server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = embed_like_server
    _, other = new_ca()
    (tmp_path / "other-ca.crt").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(grpc.aio.AioRpcError):
        await check_health(f"127.0.0.1:{port}", timeout_s=5, tls=GrpcTlsSettings(ca_file=tmp_path / "other-ca.crt"))
    with pytest.raises(grpc.aio.AioRpcError):
        await check_health(f"127.0.0.1:{port}", timeout_s=5)  # plaintext
