"""The connection options every Kafka client of Ragstream shares, built from `KafkaSettings`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context

from ragstream_common.kafka_settings import KafkaSettings


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka ships no type hints
    """SASL/OAUTHBEARER tokens for MSK IAM, signed with the pod's role (IRSA) for `region`."""

    def __init__(self, region: str) -> None:
        self._region = region

    async def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, _expiry_ms = await asyncio.to_thread(MSKAuthTokenProvider.generate_auth_token, self._region)
        return str(token)


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Security keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient
    (the bootstrap servers are passed separately)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context()
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER":
            options["sasl_oauth_token_provider"] = MskIamTokenProvider(settings.aws_region)
        else:
            options["sasl_plain_username"] = settings.sasl_username
            # The only place the password leaves its SecretStr.
            password = settings.sasl_password
            options["sasl_plain_password"] = password.get_secret_value() if password is not None else None
    return options


async def wait_until_signed_in(settings: KafkaSettings, timeout_s: float) -> bool:
    """True once the brokers accept `settings`' credentials, False if they still refuse after `timeout_s`.

    A new or changed SCRAM credential reaches the brokers a moment after the controller took it, so whoever
    creates one waits here before handing it out (or starting the service that uses it)."""
    from aiokafka import AIOKafkaClient
    from aiokafka.errors import KafkaConnectionError

    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        client = AIOKafkaClient(
            bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000, **client_options(settings)
        )
        try:
            await client.bootstrap()
            return True
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.2)
        finally:
            await client.close()


async def stop_consumer(consumer: Any) -> None:
    """`consumer.stop()` (an AIOKafkaConsumer), tolerating aiokafka's close-time CancelledError: its fetcher
    awaits the fetch tasks it has just cancelled, and one cancelled during its retry back-off re-raises the
    cancellation into the caller. A cancellation of the caller itself still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
