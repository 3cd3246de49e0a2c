"""Certificates for gRPC over TLS in compose (docker-compose.tls.yml): one private CA, one server certificate per
service.

Each certificate names the service (what its clients dial: `embed:50052`, `gateway:50050`) and 127.0.0.1 and
localhost (what its own health probe dials), so no client needs GRPC_TLS_SERVER_NAME. ECDSA P-256, which every
gRPC TLS stack accepts. Existing files are kept until they are within 30 days of expiry; delete the directory
to start over with a new CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)
CA_NAME = "Ragstream compose gRPC CA"


def write_tls(directory: Path, *, hosts: Iterable[str]) -> None:
    """`ca.crt`, `ca.key` and `<host>.crt`, `<host>.key` for every host, made where missing or expiring."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert_path, ca_key_path = directory / "ca.crt", directory / "ca.key"
    renew_all = not _fresh(ca_cert_path) or not ca_key_path.is_file()
    if renew_all:
        key, cert = new_ca()
        _write_pair(ca_key_path, key, ca_cert_path, cert)
    ca_key = _load_key(ca_key_path)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    for host in hosts:
        cert_path, key_path = directory / f"{host}.crt", directory / f"{host}.key"
        if renew_all or not _fresh(cert_path) or not key_path.is_file():
            key, cert = issue_server_certificate(host, ca_key, ca_cert)
            _write_pair(key_path, key, cert_path, cert)


def new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    builder = _builder(name, name, key.public_key(), CA_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # cert and CRL signing
    builder = builder.add_extension(usage, critical=True)
    return key, builder.sign(key, hashes.SHA256())


def issue_server_certificate(
    host: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `host`, 127.0.0.1 and localhost, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    names: list[x509.GeneralName] = [
        x509.DNSName(host),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    builder = _builder(subject, ca_cert.subject, key.public_key(), SERVER_DAYS)
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _fresh(cert_path: Path) -> bool:
    if not cert_path.is_file():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def _write_pair(key_path: Path, key: ec.EllipticCurvePrivateKey, cert_path: Path, cert: x509.Certificate) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_path.write_bytes(pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
