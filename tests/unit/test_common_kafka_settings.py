import ssl
import subprocess
import sys

import pytest
from pydantic import SecretStr, ValidationError
from ragstream_common.config import ServiceSettings
from ragstream_common.kafka.connection import MskIamTokenProvider, client_options
from ragstream_common.kafka_settings import KafkaSettings

pytestmark = pytest.mark.unit

KAFKA_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "AWS_REGION",
)


@pytest.fixture(autouse=True)
def _clean_kafka_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KAFKA_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_plaintext_is_the_default_and_needs_no_options() -> None:
    settings = KafkaSettings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.security_protocol == "PLAINTEXT"
    assert client_options(settings) == {}


def test_ssl_gets_a_tls_context_and_no_sasl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "ssl")
    options = client_options(KafkaSettings())
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert not any(key.startswith("sasl") for key in options)


def test_scram_over_tls_passes_the_secret_password_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "b-1.msk:9096")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "ragstream")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    settings = ServiceSettings().kafka
    assert settings.bootstrap_servers == "b-1.msk:9096"
    assert isinstance(settings.sasl_password, SecretStr)
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "ragstream"
    assert options["sasl_plain_password"] == "hunter2"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_oauthbearer_signs_msk_iam_tokens_for_the_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    options = client_options(KafkaSettings())
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    assert isinstance(provider, MskIamTokenProvider)
    assert provider._region == "eu-west-1"
    assert "sasl_plain_password" not in options


def test_sasl_needs_a_mechanism_and_scram_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_MECHANISM"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError) as raised:
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u")
    assert [error["loc"] for error in raised.value.errors()] == [("sasl_password",)]


def _load_in_subprocess(settings_path: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    module, name = settings_path.rsplit(".", 1)
    code = f"from ragstream_common.config import load_settings; from {module} import {name}; load_settings({name})"
    return subprocess.run(
        [sys.executable, "-c", code], env={"PATH": "", **environment}, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "settings_path",
    ["ragstream_common.config.ServiceSettings", "ragstream_common.kafka.bootstrap.BootstrapSettings"],
)
def test_an_invalid_protocol_exits_naming_the_variable(settings_path: str) -> None:
    result = _load_in_subprocess(settings_path, {"KAFKA_SECURITY_PROTOCOL": "TLS"})
    assert result.returncode == 2
    assert "KAFKA_SECURITY_PROTOCOL" in result.stderr


def test_bootstrap_and_migrations_name_their_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    replication = _load_in_subprocess(
        "ragstream_common.kafka.bootstrap.BootstrapSettings", {"KAFKA_REPLICATION_FACTOR": "three"}
    )
    assert replication.returncode == 2 and "KAFKA_REPLICATION_FACTOR" in replication.stderr
    from ragstream_common.migrate import MigrateSettings

    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    assert MigrateSettings().database_url == "postgresql://db/x"


def test_the_password_never_shows_in_reprs_or_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "ragstream")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2")
    settings = ServiceSettings()
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.kafka)
    assert "hunter2" not in settings.model_dump_json()
    # A config error elsewhere in the block must not echo the password either.
    failed = _load_in_subprocess(
        "ragstream_common.config.ServiceSettings",
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_PASSWORD": "hunter2",
        },
    )
    assert failed.returncode == 2 and "KAFKA_SASL_USERNAME" in failed.stderr
    assert "hunter2" not in failed.stderr


def test_oauthbearer_without_the_msk_extra_fails_at_start_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", None)  # as in an image built without EXTRAS=msk
    with pytest.raises(ValidationError, match="EXTRAS=msk"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER")


def test_the_commit_interval_defaults_to_200_ms_and_refuses_negatives(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().commit_interval_ms == 200
    monkeypatch.setenv("KAFKA_COMMIT_INTERVAL_MS", "0")  # 0: commit after every batch
    assert KafkaSettings().commit_interval_ms == 0
    monkeypatch.setenv("KAFKA_COMMIT_INTERVAL_MS", "-1")
    with pytest.raises(ValidationError, match="commit_interval_ms"):
        KafkaSettings()
