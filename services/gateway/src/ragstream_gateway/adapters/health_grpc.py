"""service_health.HealthProbe over gRPC: grpc.health.v1 Check on a fresh channel per probe (so a report says
whether a worker can be dialled now, not whether an old connection still lives), TLS as the gateway's other gRPC
traffic (GRPC_TLS_CA_FILE), plaintext for the workers named in GATEWAY_SERVICE_HEALTH_PLAINTEXT."""

from __future__ import annotations

from collections.abc import Collection

import grpc
from ragstream_common.grpc_server import GrpcTlsSettings, check_health

from ragstream_gateway.service_health import ServiceUnreachable


class GrpcHealthProbe:
    def __init__(self, tls: GrpcTlsSettings, plaintext: Collection[str] = ()) -> None:
        self._tls = tls
        self._plaintext = frozenset(plaintext)

    async def status(self, name: str, address: str, timeout_s: float) -> str:
        tls = None if name in self._plaintext else self._tls
        try:
            return await check_health(address, timeout_s=timeout_s, tls=tls)
        except grpc.aio.AioRpcError as exc:
            # UNAVAILABLE (refused, unresolvable, TLS handshake), DEADLINE_EXCEEDED, UNIMPLEMENTED (no health
            # service there): the code and gRPC's own words, which name no credential.
            raise ServiceUnreachable(f"{exc.code().name}: {exc.details() or 'no detail'}") from None
        except OSError as exc:  # GRPC_TLS_CA_FILE unreadable: every TLS probe fails the same way
            raise ServiceUnreachable(f"cannot read the TLS CA: {exc.strerror or exc}") from None
