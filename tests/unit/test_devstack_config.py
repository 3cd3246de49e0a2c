"""Devstack pure logic: broker config rendering, Java/Maven checks, backend choice."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from ragstream_devstack import kafka_artifacts, providers
from ragstream_devstack.kafka_artifacts import render_pom, require_java
from ragstream_devstack.kafka_config import (
    KAFKA_VERSION,
    MAX_MESSAGE_BYTES,
    ExtraListener,
    as_docker_env,
    new_cluster_id,
    parse_java_major,
    render_log4j2,
    render_properties,
    scram_credential_argument,
    single_node_settings,
)
from ragstream_devstack.processes import DevstackError, MissingToolError, require_executable

pytestmark = pytest.mark.unit


def _parse(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


ADMIN_PASSWORD = "s3cret-Pass_word"


def _local_settings() -> dict[str, str]:
    return single_node_settings(
        listen_host="127.0.0.1",
        advertised_host="127.0.0.1",
        broker_port=19092,
        controller_port=19093,
        log_dir=Path("/data/kraft"),
        admin_password=ADMIN_PASSWORD,
    )


def test_server_properties_are_a_single_node_kraft_broker_on_loopback() -> None:
    props = _parse(render_properties(_local_settings()))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == f"{props['node.id']}@127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == "/data/kraft"


def test_every_listener_authenticates_and_the_authorizer_denies_by_default() -> None:
    props = _parse(render_properties(_local_settings()))
    protocols = dict(entry.split(":") for entry in props["listener.security.protocol.map"].split(","))
    assert protocols == {"SASL_PLAINTEXT": "SASL_PLAINTEXT", "CONTROLLER": "SASL_PLAINTEXT"}
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    # Only the admin is a super user: never ANONYMOUS (what an unauthenticated listener's clients are).
    assert props["super.users"] == "User:ragstream-admin"
    broker_login = props["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]
    assert broker_login.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required ")
    assert f'username="ragstream-admin" password="{ADMIN_PASSWORD}";' in broker_login
    controller_login = props["listener.name.controller.plain.sasl.jaas.config"]
    assert f'user_ragstream-admin="{ADMIN_PASSWORD}";' in controller_login


def test_the_admin_credential_is_made_at_format_time() -> None:
    argument = scram_credential_argument(ADMIN_PASSWORD)
    assert argument == f"SCRAM-SHA-512=[name=ragstream-admin,password={ADMIN_PASSWORD},iterations=8192]"


@pytest.mark.parametrize("password", ["", 'a"b', "a b", "a;b", "a\\b", "a]b"])
def test_an_admin_password_that_would_break_the_quoting_is_refused(password: str) -> None:
    with pytest.raises(ValueError, match="URL-safe"):
        scram_credential_argument(password)
    with pytest.raises(ValueError, match="URL-safe"):
        single_node_settings(
            listen_host="h", advertised_host="h", broker_port=1, controller_port=2, admin_password=password
        )


def test_an_extra_listener_advertises_the_address_in_front_of_it() -> None:
    """The chaos suite's worker-broker partition: clients bootstrapped through a proxy must stay behind it."""
    settings = single_node_settings(
        listen_host="127.0.0.1",
        advertised_host="127.0.0.1",
        broker_port=19092,
        controller_port=19093,
        extra_listeners={"CHAOS": ExtraListener(19094, "127.0.0.1:29094")},
        admin_password=ADMIN_PASSWORD,
    )
    assert settings["listeners"].endswith(",CHAOS://127.0.0.1:19094")
    assert settings["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CHAOS://127.0.0.1:29094"
    assert "CHAOS:SASL_PLAINTEXT" in settings["listener.security.protocol.map"].split(",")
    assert 'password="s3cret-Pass_word"' in settings["listener.name.chaos.scram-sha-512.sasl.jaas.config"]


def test_server_properties_carry_the_single_node_settings() -> None:
    props = _parse(render_properties(_local_settings()))
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["message.max.bytes"] == str(16 * 1024 * 1024) == str(MAX_MESSAGE_BYTES)


def test_container_settings_reach_their_own_controller_and_omit_log_dirs() -> None:
    settings = single_node_settings(
        listen_host="0.0.0.0",
        advertised_host="docker-host",
        broker_port=30000,
        controller_port=9093,
        controller_host="localhost",
        admin_password=ADMIN_PASSWORD,
    )
    env = as_docker_env(settings)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "SASL_PLAINTEXT://docker-host:30000"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:ragstream-admin"
    assert "KAFKA_LOG_DIRS" not in env
    # The image's names: '_' is written '__' and '-' '___' (then '.' becomes '_').
    jaas = env["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    assert jaas == settings["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"]


def test_log4j2_config_sends_everything_to_the_given_file() -> None:
    text = render_log4j2(Path("/data/logs/server.log"))
    assert "appender.file.fileName = /data/logs/server.log" in text
    assert "rootLogger.appenderRef.file.ref = FILE" in text


def test_cluster_id_is_16_bytes_of_url_safe_base64() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert new_cluster_id() != cluster_id


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    # 0xf8.. encodes to '-' first in URL-safe base64: the first draw must be skipped.
    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    assert not new_cluster_id().startswith("-")
    assert base64.urlsafe_b64encode(b"\xf8" + bytes(15)).startswith(b"-")


def test_pom_pins_the_broker_and_a_log4j_binding() -> None:
    pom = render_pom()
    assert f"<artifactId>kafka_2.13</artifactId>\n      <version>{KAFKA_VERSION}</version>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25-ea" 2025-09-16', 25),
        ("garbage", None),
    ],
)
def test_java_major_version_is_parsed(output: str, major: int | None) -> None:
    assert parse_java_major(output) == major


def test_missing_java_says_what_to_install() -> None:
    with (
        mock.patch("shutil.which", return_value=None),
        pytest.raises(MissingToolError, match="openjdk-17-jre-headless") as info,
    ):
        require_java()
    assert "`java` was not found on PATH" in str(info.value)


def test_too_old_java_says_17_is_needed() -> None:
    old = subprocess.CompletedProcess(["java"], 0, stdout="", stderr='java version "1.8.0_392"')
    with (
        mock.patch("shutil.which", return_value="/usr/bin/java"),
        mock.patch.object(kafka_artifacts.subprocess, "run", return_value=old),
        pytest.raises(MissingToolError, match=r"needs Java 17\+.*reports 8"),
    ):
        require_java()


def test_missing_maven_says_what_to_install() -> None:
    with (
        mock.patch("shutil.which", return_value=None),
        pytest.raises(MissingToolError, match="apt-get install maven"),
    ):
        require_executable("mvn", kafka_artifacts.MAVEN_HINT)


def test_cache_dir_follows_the_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSTREAM_CACHE_DIR", "/somewhere/cache")
    assert kafka_artifacts.kafka_home() == Path("/somewhere/cache/kafka") / KAFKA_VERSION


def test_cache_dir_defaults_to_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGSTREAM_CACHE_DIR", raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert kafka_artifacts.kafka_home() == repo / ".cache" / "kafka" / KAFKA_VERSION


@pytest.mark.parametrize(("value", "backend"), [("local", "local"), ("DOCKER", "docker")])
def test_backend_can_be_forced(monkeypatch: pytest.MonkeyPatch, value: str, backend: str) -> None:
    monkeypatch.setenv("RAGSTREAM_DEVSTACK_BACKEND", value)
    assert providers.choose_backend() == backend


def test_unknown_backend_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSTREAM_DEVSTACK_BACKEND", "podman")
    with pytest.raises(DevstackError, match="auto, docker or local"):
        providers.choose_backend()


def test_cli_never_probes_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGSTREAM_DEVSTACK_BACKEND", raising=False)
    with mock.patch.object(providers, "docker_available", side_effect=AssertionError("probed")):
        assert providers.choose_backend(allow_docker=False) == "local"
