"""Connector secrets opened with the tenant's data key (ragstream_common.secret_envelope).

Sealed bytes that do not open (another tenant or connector, altered bytes, a master key this worker does not
hold) will not open on a retry either: they surface as PermanentError, so the event is dead-lettered with the
reason (which names tenants and keys, never secret material) instead of being retried.
"""

from __future__ import annotations

from ragstream_common.events import PermanentError
from ragstream_common.secret_envelope import SecretEnvelopeError, TenantSecretSealer


class ConnectorSecrets:
    """`SecretUnsealer` over the tenant secret sealer; the purpose is the connector id."""

    def __init__(self, sealer: TenantSecretSealer) -> None:
        self._sealer = sealer

    async def unseal(self, tenant_id: str, purpose: str, ciphertext: bytes) -> dict[str, str]:
        try:
            return await self._sealer.unseal(tenant_id, purpose, ciphertext)
        except SecretEnvelopeError as exc:
            raise PermanentError(f"connector {purpose}: secrets do not open: {exc}") from exc
