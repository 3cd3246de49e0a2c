"""GenerateService over gRPC: a server-streaming answer for direct callers.

Callers present a token with scope `generate` (grpc_auth): the answer is produced for the token's tenant, and
a `tenant_id` field naming another tenant is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
from rag.v1 import queries_pb2, services_pb2, services_pb2_grpc
from ragstream_common.grpc_auth import tenant_of_call

from ragstream_generate.backends.base import AnswerBackend
from ragstream_generate.handlers import stream_answer


class GenerateServicer(services_pb2_grpc.GenerateServiceServicer):
    def __init__(self, backend: AnswerBackend) -> None:
        self._backend = backend

    async def Generate(
        self,
        request: services_pb2.GenerateRequest,
        context: grpc.aio.ServicerContext[services_pb2.GenerateRequest, services_pb2.GenerateEvent],
    ) -> AsyncIterator[services_pb2.GenerateEvent]:
        tenant_id = await tenant_of_call(request.tenant_id, context)
        if not request.question.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "question must not be empty")
        query_id = request.query_id or uuid.uuid4().hex
        async for event in stream_answer(self._backend, query_id, tenant_id, request.question, request.sources):
            if isinstance(event, queries_pb2.AnswerProduced):
                yield services_pb2.GenerateEvent(done=event)
            else:
                yield services_pb2.GenerateEvent(token=event)
