"""infra/k8s under the trust model: each service reads only its own Secret and signs in as itself; only the Jobs
read administrator secrets; every variable a value refers to is defined before it."""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.kafka_settings import KafkaSettings
from ragstream_common.registry import SERVICE_NAMES
from ragstream_common.reply_targets import ReplyTargetSettings
from ragstream_devstack.pg_identities import LOGIN_ROLES, SERVICE_LOGINS
from ragstream_devstack.token_keys import MINTING_SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
ADMIN_SECRETS = {"ragstream-database-admin", "ragstream-kafka-admin"}
REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def documents(kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((K8S / "base").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind:
                found[doc["metadata"]["name"]] = doc
    return found


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def service_container(name: str) -> dict[str, Any]:
    (container,) = documents("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def secret_ref(entry: dict[str, Any]) -> tuple[str, str] | None:
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def secrets_read(container: dict[str, Any]) -> set[str]:
    names = {ref[0] for entry in container.get("env", []) if (ref := secret_ref(entry))}
    return names | {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}


def config_literals(kustomization: Path) -> dict[str, str]:
    (generator,) = (g for g in yaml.safe_load(kustomization.read_text())["configMapGenerator"])
    return dict(literal.split("=", 1) for literal in generator["literals"])


BASE_CONFIG = config_literals(K8S / "base" / "kustomization.yaml")


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_no_service_reads_another_services_or_an_administrators_secret(name: str) -> None:
    assert secrets_read(service_container(name)) <= {f"ragstream-{name}-credentials", f"ragstream-{name}"}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_signs_in_to_kafka_as_its_own_principal(name: str) -> None:
    env = env_of(service_container(name))
    assert env["KAFKA_SASL_USERNAME"]["value"] == f"ragstream-{name}"
    password = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (password["name"], password["key"]) == (f"ragstream-{name}-credentials", "kafka-password")
    # Absent where MSK IAM signs the service in (overlays/aws); KafkaSettings refuses SCRAM without it.
    assert password["optional"] is True
    provisioner = "GATEWAY_KAFKA_PROVISIONER_PASSWORD" in env
    assert provisioner == (name == "gateway")


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_connects_to_postgres_as_its_own_login(name: str) -> None:
    env = env_of(service_container(name))
    logins = SERVICE_LOGINS.get(name, {})
    for variable, identity in logins.items():
        match = re.fullmatch(r"postgresql://([a-z_]+):\$\((\w+)\)@\$\(DATABASE_LOCATION\)", env[variable]["value"])
        assert match, env[variable]["value"]
        role, password_variable = match.groups()
        assert role == LOGIN_ROLES[identity]
        assert secret_ref(env[password_variable]) is not None
        assert secret_ref(env[password_variable])[0] == f"ragstream-{name}-credentials"  # type: ignore[index]
    if not logins:
        assert not [variable for variable in env if variable.startswith("DATABASE")], "generate has no database"


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_service_trusts_the_minters_keys_and_only_minters_hold_one(name: str) -> None:
    env = env_of(service_container(name))
    trusted = env["TOKEN_TRUSTED_KEYS"]["valueFrom"]["configMapKeyRef"]
    assert (trusted["name"], trusted["key"]) == ("ragstream-token-keys", "TOKEN_TRUSTED_KEYS")
    signing = {v: secret_ref(env[v]) for v in ("TOKEN_SIGNING_KEY", "TOKEN_SIGNING_KEY_ID") if v in env}
    if name in MINTING_SERVICES:
        assert signing == {
            "TOKEN_SIGNING_KEY": (f"ragstream-{name}-credentials", "token-signing-key"),
            "TOKEN_SIGNING_KEY_ID": (f"ragstream-{name}-credentials", "token-signing-key-id"),
        }
    else:
        assert signing == {}


def test_only_the_jobs_read_administrator_secrets() -> None:
    readers = {
        (kind, doc["metadata"]["name"])
        for kind in ("Deployment", "Job")
        for doc in documents(kind).values()
        for container in containers(doc)
        if secrets_read(container) & ADMIN_SECRETS
    }
    assert readers == {("Job", "migrate"), ("Job", "topics")}


def test_migrate_job_gives_each_login_role_the_password_its_service_connects_with() -> None:
    job = documents("Job")["migrate"]
    (logins,) = job["spec"]["template"]["spec"]["containers"]
    env = env_of(logins)
    assert secret_ref(env["DATABASE_URL"]) == ("ragstream-database-admin", "DATABASE_URL")
    passwords = {v.removeprefix("RAGSTREAM_PG_PASSWORD_"): secret_ref(e) for v, e in env.items() if "PG_PASSWORD" in v}
    expected = {}
    for service, variables in SERVICE_LOGINS.items():
        service_env = env_of(service_container(service))
        for variable, identity in variables.items():
            password_variable = REFERENCE.findall(service_env[variable]["value"])[0]
            expected[identity.upper().replace("-", "_")] = secret_ref(service_env[password_variable])
    assert passwords == expected
    assert {identity.upper().replace("-", "_") for identity in LOGIN_ROLES} == set(passwords)


def test_topics_job_signs_in_as_the_kafka_administrator_and_never_touches_postgres() -> None:
    (container,) = containers(documents("Job")["topics"])
    env = env_of(container)
    assert env["KAFKA_SASL_USERNAME"]["value"] == "ragstream-admin"
    assert secret_ref(env["KAFKA_SASL_PASSWORD"]) == ("ragstream-kafka-admin", "kafka-password")
    assert "DATABASE_URL" not in env


@pytest.mark.parametrize(
    "workload", [*documents("Deployment").values(), *documents("Job").values()], ids=lambda d: d["metadata"]["name"]
)
def test_every_reference_is_defined_before_it_is_used(workload: dict[str, Any]) -> None:
    # Kubernetes expands $(VAR) from envFrom and the entries above it; anything else stays literal text.
    for container in containers(workload):
        defined = set(BASE_CONFIG)
        for entry in container.get("env", []):
            for name in REFERENCE.findall(entry.get("value", "")):
                assert name in defined, f"{entry['name']} uses $({name}) before it is defined"
            defined.add(entry["name"])


@pytest.mark.parametrize("overlay", ["base", "overlays/aws"])
def test_shared_config_is_valid_for_the_services(overlay: str) -> None:
    literals = {**BASE_CONFIG, **config_literals(K8S / overlay / "kustomization.yaml")}
    targets = ReplyTargetSettings(allowed_targets=literals["REPLY_ALLOWED_TARGETS"]).targets()
    pod_network = ipaddress.ip_network(literals["REPLY_ALLOWED_TARGETS"])
    assert targets.allows(f"{next(pod_network.hosts())}:50050") and not targets.allows("192.0.2.1:50050")
    assert re.fullmatch(r"[a-z0-9.-]+:\d+/ragstream\?sslmode=\w+(&.*)?", literals["DATABASE_LOCATION"])
    protocol, mechanism = literals["KAFKA_SECURITY_PROTOCOL"], literals["KAFKA_SASL_MECHANISM"]
    assert (protocol, mechanism) in {("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "OAUTHBEARER")}
    if mechanism != "OAUTHBEARER":  # the signer is an image extra, not installed here
        KafkaSettings(
            security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="ragstream-ingest", sasl_password="x"
        )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_aws_overlay_keeps_each_services_own_identity() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / "aws")], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    deployments = {d["metadata"]["name"]: d for d in yaml.safe_load_all(built) if d and d["kind"] == "Deployment"}
    for name in SERVICE_NAMES:
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert secrets_read(container) <= {f"ragstream-{name}-credentials", f"ragstream-{name}"}
        config = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
        assert len(config) == 1 and config[0].startswith("ragstream-config-")
