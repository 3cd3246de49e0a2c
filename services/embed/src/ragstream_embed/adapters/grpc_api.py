"""EmbedService over gRPC: direct embedding for internal and external clients.

Callers present a token with scope `embed` (grpc_auth checks it before any call reaches this servicer);
embedding reads no tenant's data, so the token's tenant is only the caller's identity here.
"""

from __future__ import annotations

from typing import cast

import grpc
from rag.v1 import services_pb2, services_pb2_grpc

from ragstream_embed.ports import Encoder, EncoderSet

MAX_TEXTS = 512


class _Single:
    """One encoder as an `EncoderSet` (the primary only)."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder

    async def encoder(self, model: str) -> Encoder | None:
        return self._encoder if not model or model == self._encoder.model_name else None


class EmbedServicer(services_pb2_grpc.EmbedServiceServicer):
    def __init__(self, encoders: Encoder | EncoderSet) -> None:
        # One encoder (tools and tests) or the service's served models (EmbedRequest.model picks one).
        self._encoders: EncoderSet = cast(EncoderSet, encoders) if hasattr(encoders, "encoder") else _Single(encoders)

    async def Embed(
        self,
        request: services_pb2.EmbedRequest,
        context: grpc.aio.ServicerContext[services_pb2.EmbedRequest, services_pb2.EmbedResponse],
    ) -> services_pb2.EmbedResponse:
        if not request.texts:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts must not be empty")
        if len(request.texts) > MAX_TEXTS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_TEXTS} texts per call")
        encoder = await self._encoders.encoder(request.model)
        if encoder is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"model {request.model!r} is not served here")
        assert encoder is not None  # abort raises
        encode = encoder.encode_queries if request.is_query else encoder.encode_documents
        vectors = await encode(list(request.texts))
        return services_pb2.EmbedResponse(
            embeddings=[services_pb2.Embedding(values=row.tolist()) for row in vectors],
            model=encoder.model_name,
            dimensions=encoder.dimensions,
        )
