"""How every Kafka client of Ragstream connects: plaintext locally, TLS + SASL on MSK.

KAFKA_SECURITY_PROTOCOL (PLAINTEXT | SSL | SASL_SSL) and KAFKA_SASL_MECHANISM (OAUTHBEARER for MSK IAM,
SCRAM-SHA-512, PLAIN) come from the environment, as set by the Kubernetes overlay; the defaults suit the local
broker. With OAUTHBEARER, tokens are signed by the pod's IAM role (IRSA) for AWS_REGION.
"""

from __future__ import annotations

import os
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.helpers import create_ssl_context


class MskIamTokenProvider(AbstractTokenProvider):
    def __init__(self, region: str) -> None:
        self._region = region

    async def token(self) -> str:
        import asyncio

        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        token, _expiry_ms = await asyncio.to_thread(MSKAuthTokenProvider.generate_auth_token, self._region)
        return str(token)


def client_options(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    env = os.environ if environ is None else environ
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol, "ssl_context": create_ssl_context()}
    if protocol.startswith("SASL"):
        mechanism = env.get("KAFKA_SASL_MECHANISM", "OAUTHBEARER").upper()
        options["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            options["sasl_oauth_token_provider"] = MskIamTokenProvider(env.get("AWS_REGION", "us-east-1"))
        else:
            options["sasl_plain_username"] = env.get("KAFKA_SASL_USERNAME", "")
            options["sasl_plain_password"] = env.get("KAFKA_SASL_PASSWORD", "")
    return options
