"""EmbedService over gRPC: direct embedding for internal and external clients.

Callers present a token with scope `embed` (grpc_auth checks it before any call reaches this servicer);
embedding reads no tenant's data, so the token's tenant is only the caller's identity here.
"""

from __future__ import annotations

import grpc
from rag.v1 import services_pb2, services_pb2_grpc

from ragstream_embed.ports import Encoder

MAX_TEXTS = 512


class EmbedServicer(services_pb2_grpc.EmbedServiceServicer):
    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder

    async def Embed(
        self,
        request: services_pb2.EmbedRequest,
        context: grpc.aio.ServicerContext[services_pb2.EmbedRequest, services_pb2.EmbedResponse],
    ) -> services_pb2.EmbedResponse:
        if not request.texts:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "texts must not be empty")
        if len(request.texts) > MAX_TEXTS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_TEXTS} texts per call")
        encode = self._encoder.encode_queries if request.is_query else self._encoder.encode_documents
        vectors = await encode(list(request.texts))
        return services_pb2.EmbedResponse(
            embeddings=[services_pb2.Embedding(values=row.tolist()) for row in vectors],
            model=self._encoder.model_name,
            dimensions=self._encoder.dimensions,
        )
