"""The local master key of connector secrets (envelope_keys.py): made once, kept, and held by the gateway and the
connectors worker only, in `make run` and in compose; and the webhook base both of them are given."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from pydantic import SecretStr
from ragstream_common.registry import SERVICE_NAMES
from ragstream_common.secret_settings import SecretsSettings
from ragstream_devstack.compose_secrets import write_compose_secrets
from ragstream_devstack.credentials import LocalCredentials
from ragstream_devstack.envelope_keys import (
    ENVELOPE_SERVICES,
    MASTER_KEY_SECRET,
    envelope_identity_env,
    master_key,
    master_key_id,
)
from ragstream_devstack.identities import service_identity_env
from ragstream_devstack.system import SystemPorts, service_env

pytestmark = pytest.mark.unit
KEY_VARIABLES = {"SECRETS_MASTER_KEY", "SECRETS_MASTER_KEY_ID"}


def test_master_key_is_32_random_bytes_made_once_and_kept(tmp_path: Path) -> None:
    credentials = LocalCredentials(tmp_path)
    key, key_id = master_key(credentials), master_key_id(credentials)
    assert len(base64.b64decode(key, validate=True)) == 32
    assert (master_key(credentials), master_key_id(credentials)) == (key, key_id)
    assert credentials.stored(MASTER_KEY_SECRET) == key
    assert master_key(LocalCredentials(tmp_path / "other")) != key
    # What the services' settings accept (SECRETS_MASTER_KEY, SECRETS_MASTER_KEY_ID).
    settings = SecretsSettings(master_key=SecretStr(key), master_key_id=key_id)
    assert settings.master_key is not None and settings.master_key.get_secret_value() == key


def test_only_the_gateway_and_the_connectors_worker_hold_the_same_key(tmp_path: Path) -> None:
    credentials = LocalCredentials(tmp_path)
    envs = {
        name: service_identity_env(
            name, credentials=credentials, kafka="127.0.0.1:1", database_url="postgresql://admin@127.0.0.1/rag"
        )
        for name in SERVICE_NAMES
    }
    holders = {name for name, env in envs.items() if KEY_VARIABLES & env.keys()}
    assert holders == set(ENVELOPE_SERVICES) == {"gateway", "connectors"}
    assert envs["gateway"]["SECRETS_MASTER_KEY"] == envs["connectors"]["SECRETS_MASTER_KEY"]
    assert envelope_identity_env("ingest", credentials=credentials) == {}


def test_compose_env_files_carry_it_for_those_two_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    write_compose_secrets(tmp_path)
    key = LocalCredentials(tmp_path / "credentials").secret(MASTER_KEY_SECRET)
    holding = {name for name in SERVICE_NAMES if key in (tmp_path / "env" / f"{name}.env").read_text()}
    assert holding == set(ENVELOPE_SERVICES)


def test_gateway_and_worker_get_the_same_webhook_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("GATEWAY_PUBLIC_BASE_URL", raising=False)
    ports = SystemPorts.defaults()

    def env(name: str) -> dict[str, str]:
        credentials = LocalCredentials(tmp_path)
        return service_env(name, kafka="127.0.0.1:1", database_url="", ports=ports, credentials=credentials)

    assert env("gateway")["GATEWAY_PUBLIC_BASE_URL"] == f"http://127.0.0.1:{ports.http}"
    assert env("connectors")["CONNECTORS_WEBHOOK_BASE_URL"] == f"http://127.0.0.1:{ports.http}"
    # A tunnel from the shell (real providers cannot reach loopback) wins for both.
    monkeypatch.setenv("GATEWAY_PUBLIC_BASE_URL", "https://tunnel.example.net")
    assert env("gateway")["GATEWAY_PUBLIC_BASE_URL"] == "https://tunnel.example.net"
    assert env("connectors")["CONNECTORS_WEBHOOK_BASE_URL"] == "https://tunnel.example.net"
