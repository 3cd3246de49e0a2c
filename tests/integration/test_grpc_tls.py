"""gRPC over TLS outside a mesh: with GRPC_TLS_* set, a server serves TLS only, and a client that trusts its CA
gets through (health and a token-authenticated rag.v1 call); a plaintext client, or one trusting another CA,
does not. The certificate is self-signed, made here."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_server import GrpcServer, GrpcTlsSettings, check_health, grpc_channel, insecure_channel
from ragstream_generate.adapters.grpc_api import GenerateServicer
from ragstream_generate.backends.extractive import ExtractiveBackend, ExtractiveConfig
from support.tokens import TokenKit

pytestmark = pytest.mark.integration
KIT = TokenKit()
FACT = "The Danube flows through ten countries before it reaches the Black Sea."


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    cert_file, key_file = self_signed(tmp_path, "server")
    server = GrpcServer(
        "127.0.0.1",
        0,
        ["rag.v1.GenerateService"],
        verifier=KIT.verifier(),
        tls=GrpcTlsSettings(cert_file=cert_file, key_file=key_file),
    )
    backend = ExtractiveBackend(ExtractiveConfig(max_sentences=1))
    server.add(partial(services_pb2_grpc.add_GenerateServiceServicer_to_server, GenerateServicer(backend)))
    await server.start()
    await server.mark_serving()
    yield server.address, cert_file
    await server.stop(0.5)


async def _generate(channel: grpc.aio.Channel) -> str:
    stub = services_pb2_grpc.GenerateServiceStub(channel)
    source = queries_pb2.ScoredChunk(chunk_id="c1", document_id="d1", title="Danube", text=FACT, score=0.9)
    request = services_pb2.GenerateRequest(question="How many countries?", sources=[source])
    metadata = KIT.metadata("tenant-a", ["generate"], "generate")
    events = [event async for event in stub.Generate(request, metadata=metadata, timeout=5)]
    return str(events[-1].done.answer)


async def test_a_tls_client_gets_through(tls_server: tuple[str, Path]) -> None:
    address, cert_file = tls_server
    tls = GrpcTlsSettings(ca_file=cert_file)
    assert await check_health(address, tls=tls) == "SERVING"
    async with grpc_channel(address, tls) as channel:
        assert "ten countries" in await _generate(channel)
    # By name, as a client inside compose would dial it.
    port = address.rpartition(":")[2]
    async with grpc_channel(f"localhost:{port}", tls) as channel:
        assert "ten countries" in await _generate(channel)


async def test_plaintext_and_untrusting_clients_are_refused(tls_server: tuple[str, Path], tmp_path: Path) -> None:
    address, _ = tls_server
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check_health(address)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _generate(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    other_ca, _ = self_signed(tmp_path, "other")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check_health(address, tls=GrpcTlsSettings(ca_file=other_ca))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_settings_come_from_the_environment_and_pair_cert_with_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert not GrpcTlsSettings().serves_tls and not GrpcTlsSettings().dials_tls
    monkeypatch.setenv("GRPC_TLS_CERT_FILE", str(tmp_path / "server.crt"))
    with pytest.raises(ValueError):
        GrpcTlsSettings()
    monkeypatch.setenv("GRPC_TLS_KEY_FILE", str(tmp_path / "server.key"))
    monkeypatch.setenv("GRPC_TLS_CA_FILE", str(tmp_path / "ca.crt"))
    settings = GrpcTlsSettings()
    assert settings.serves_tls and settings.dials_tls
