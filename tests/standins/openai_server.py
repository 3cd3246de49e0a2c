"""Stand-in for an OpenAI-compatible chat-completions server (the real wire protocol, scripted replies).

    with OpenAIStandin() as server:          # uvicorn on 127.0.0.1, a free port, background thread
        server.script(Reply.answer("Refunds take 30 days [1]."))
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")
        ...
        server.requests[-1].body["messages"]

Replies are consumed one per request; the last scripted reply repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from standins.server import Standin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ReplyKind = Literal["answer", "error", "hang", "hang_mid_stream", "malformed"]
_TOKEN = re.compile(r"\s*\S+")


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind = "answer"
    text: str = ""
    status: int = 500
    hang_s: float = 30.0
    token_delay_s: float = 0.0

    @classmethod
    def answer(cls, text: str, token_delay_s: float = 0.0) -> Reply:
        return cls("answer", text, token_delay_s=token_delay_s)

    @classmethod
    def error(cls, status: int = 500) -> Reply:
        return cls("error", status=status)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Reply:
        """Accept the request, then send nothing (not even headers) for `seconds`."""
        return cls("hang", hang_s=seconds)

    @classmethod
    def hang_mid_stream(cls, text: str, seconds: float = 30.0) -> Reply:
        """Stream the first half of `text`, then stall for `seconds`."""
        return cls("hang_mid_stream", text, hang_s=seconds)

    @classmethod
    def malformed(cls) -> Reply:
        """A 200 event stream whose data line is not JSON."""
        return cls("malformed")


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def prompt(self) -> str:
        """All message contents, joined: what the model was shown."""
        return "\n".join(str(m.get("content", "")) for m in self.body.get("messages", []))


class OpenAIStandin(Standin):
    standin_name = "openai-standin"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[RecordedRequest] = []  # appended by the server thread
        self._replies: list[Reply] = [Reply.answer("OK [1].")]
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None  # set on stop(); lives on the server's loop

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        """Set the replies for the next requests and forget the recorded ones."""
        self._replies = list(replies)
        self.requests.clear()

    def _next_reply(self) -> Reply:
        return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    # --- lifecycle -------------------------------------------------------------------------
    def stop(self) -> None:
        self._closing = True
        if self._loop and self._release:  # end hangs early so shutdown is quick
            self._loop.call_soon_threadsafe(self._release.set)
        super().stop()

    # --- HTTP ------------------------------------------------------------------------------
    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _models(self, _: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": "standin-model", "object": "model", "created": 0, "owned_by": "standin"}],
            }
        )

    async def _chat_completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        reply = self._next_reply()
        model = body.get("model", "standin-model")
        if reply.kind == "error":
            return JSONResponse(
                {"error": {"message": "stand-in failure", "type": "server_error", "param": None, "code": None}},
                status_code=reply.status,
            )
        if reply.kind == "hang":
            await self._sleep(reply.hang_s)
            return JSONResponse({"error": {"message": "hung", "type": "server_error"}}, 504)
        if not body.get("stream"):
            return JSONResponse(_completion(model, reply.text))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._events(reply, model, include_usage), media_type="text/event-stream")

    async def _sleep(self, seconds: float) -> None:
        if self._release is None:
            self._loop, self._release = asyncio.get_running_loop(), asyncio.Event()
        if not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), seconds)

    async def _events(self, reply: Reply, model: str, include_usage: bool) -> AsyncIterator[str]:
        if reply.kind == "malformed":
            yield "data: {this is not json\n\n"
            return
        chunk = _ChunkFactory(model)
        yield chunk.sse({"role": "assistant", "content": ""})
        tokens = _TOKEN.findall(reply.text)
        if reply.kind == "hang_mid_stream":
            tokens = tokens[: max(1, len(tokens) // 2)]
        for token in tokens:
            if reply.token_delay_s:
                await asyncio.sleep(reply.token_delay_s)
            yield chunk.sse({"content": token})
        if reply.kind == "hang_mid_stream":
            await self._sleep(reply.hang_s)
            return
        yield chunk.sse({}, finish_reason="stop")
        if include_usage:
            yield chunk.sse_usage(len(tokens))
        yield "data: [DONE]\n\n"


class _ChunkFactory:
    """chat.completion.chunk objects sharing one id, as a real server sends them."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model

    def _base(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "standin",
            "choices": choices,
        }

    def sse(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return f"data: {json.dumps(self._base([choice]))}\n\n"

    def sse_usage(self, completion_tokens: int) -> str:
        usage = {"prompt_tokens": 0, "completion_tokens": completion_tokens, "total_tokens": completion_tokens}
        return f"data: {json.dumps({**self._base([]), 'usage': usage})}\n\n"


def _completion(model: str, text: str) -> dict[str, Any]:
    tokens = len(_TOKEN.findall(text))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "standin",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
    }
