"""Stand-in for an OpenAI-compatible chat-completions server (the real wire protocol, scripted replies).

    with OpenAIStandin() as server:          # uvicorn on 127.0.0.1, a free port, background thread
        server.script(Reply.answer("Refunds take 30 days [1]."))
        client = AsyncOpenAI(base_url=server.base_url, api_key="test")
        ...
        server.requests[-1].body["messages"]

Replies are consumed one per request; the last scripted reply repeats.

Tool calls (`Reply.tool_call`, `Reply.tool_calls`) stream as the OpenAI chat-completions API documents them
(API reference, "The chat completion chunk object": https://platform.openai.com/docs/api-reference/chat-streaming;
function-calling guide, "Streaming": https://platform.openai.com/docs/guides/function-calling#streaming; the
SDK's wire types, openai-python `openai/types/chat/chat_completion_chunk.py`, ChoiceDeltaToolCall):
- each call's first delta is `tool_calls: [{index, id, type: "function", function: {name, arguments: ""}}]`;
- later deltas carry only `index` and a fragment of `function.arguments` (a JSON string, streamed in pieces);
- the last choice chunk has an empty delta and `finish_reason: "tool_calls"`;
- with `stream_options.include_usage`, a final chunk has `choices: []` and `usage`.
The recorded request bodies keep the `tools`, `tool_choice` and every message (tool messages included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from standins.server import Standin
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ReplyKind = Literal["answer", "error", "hang", "hang_mid_stream", "malformed", "tool_calls"]
_TOKEN = re.compile(r"\s*\S+")
ARGUMENT_FRAGMENT_CHARS = 7  # a tool call's arguments stream in pieces this long (mid-token, as models do)


@dataclass(frozen=True)
class ScriptedToolCall:
    """One tool call of a scripted reply. `arguments` is sent verbatim (it may be malformed JSON)."""

    name: str
    arguments: str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    @classmethod
    def of(cls, name: str, arguments: Mapping[str, Any] | str, call_id: str | None = None) -> ScriptedToolCall:
        text = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        return cls(name, text, call_id) if call_id else cls(name, text)

    def fragments(self) -> list[str]:
        text = self.arguments
        return [text[i : i + ARGUMENT_FRAGMENT_CHARS] for i in range(0, len(text), ARGUMENT_FRAGMENT_CHARS)]

    def message_entry(self) -> dict[str, Any]:
        """The call as it appears in a non-streamed assistant message."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Reply:
    kind: ReplyKind = "answer"
    text: str = ""
    status: int = 500
    hang_s: float = 30.0
    token_delay_s: float = 0.0
    calls: tuple[ScriptedToolCall, ...] = ()
    stall_s: float | None = None  # tool calls: stall this long after half of the fragments
    prompt_tokens: int = 0  # reported in the usage chunk
    completion_tokens: int | None = None  # None: the streamed pieces are counted

    @classmethod
    def answer(
        cls, text: str, token_delay_s: float = 0.0, *, prompt_tokens: int = 0, completion_tokens: int | None = None
    ) -> Reply:
        return cls(
            "answer",
            text,
            token_delay_s=token_delay_s,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    @classmethod
    def tool_call(
        cls,
        name: str,
        arguments: Mapping[str, Any] | str,
        *,
        call_id: str | None = None,
        text: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int | None = None,
        stall_s: float | None = None,
    ) -> Reply:
        """The model calls one tool; a str `arguments` is sent as is (a test can send malformed JSON).
        `text`: assistant content streamed before the call."""
        call = ScriptedToolCall.of(name, arguments, call_id)
        return cls.tool_calls(
            [call], text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, stall_s=stall_s
        )

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[ScriptedToolCall | tuple[str, Mapping[str, Any] | str]],
        *,
        text: str = "",
        prompt_tokens: int = 0,
        completion_tokens: int | None = None,
        stall_s: float | None = None,
    ) -> Reply:
        """Several tool calls in one assistant message (parallel tool calls), each streamed in fragments."""
        scripted = tuple(call if isinstance(call, ScriptedToolCall) else ScriptedToolCall.of(*call) for call in calls)
        return cls(
            "tool_calls",
            text,
            calls=scripted,
            stall_s=stall_s,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

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

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    def prompt(self) -> str:
        """All message contents, joined: what the model was shown."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)

    def tool_names(self) -> list[str]:
        """The names of the tools the request offered."""
        return [tool["function"]["name"] for tool in self.body.get("tools", [])]

    def tool_results(self) -> dict[str, str]:
        """The `role: "tool"` messages: tool_call_id -> content."""
        return {m["tool_call_id"]: str(m.get("content") or "") for m in self.messages if m.get("role") == "tool"}


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
            return JSONResponse(_completion(model, reply))
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
        if reply.kind == "tool_calls":
            async for event in self._tool_call_events(reply, chunk, include_usage):
                yield event
            return
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
            yield chunk.sse_usage(reply.prompt_tokens, _completion_tokens(reply, len(tokens)))
        yield "data: [DONE]\n\n"

    async def _tool_call_events(self, reply: Reply, chunk: _ChunkFactory, include_usage: bool) -> AsyncIterator[str]:
        """Optional content, then each call: a head delta (id, type, name, empty arguments) and argument fragments."""
        yield chunk.sse({"role": "assistant", "content": reply.text or None})
        deltas: list[dict[str, Any]] = []
        for index, call in enumerate(reply.calls):
            head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            deltas.append({"tool_calls": [head]})
            deltas.extend(
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]} for piece in call.fragments()
            )
        stall_at = len(deltas) // 2 if reply.stall_s is not None else None
        for number, delta in enumerate(deltas):
            if number == stall_at and reply.stall_s is not None:
                await self._sleep(reply.stall_s)
                return
            yield chunk.sse(delta)
        yield chunk.sse({}, finish_reason="tool_calls")
        if include_usage:
            yield chunk.sse_usage(reply.prompt_tokens, _completion_tokens(reply, len(deltas)))
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

    def sse_usage(self, prompt_tokens: int, completion_tokens: int) -> str:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return f"data: {json.dumps({**self._base([]), 'usage': usage})}\n\n"


def _completion_tokens(reply: Reply, streamed_pieces: int) -> int:
    return streamed_pieces if reply.completion_tokens is None else reply.completion_tokens


def _completion(model: str, reply: Reply) -> dict[str, Any]:
    """A non-streamed chat.completion: the text, or the tool calls with finish_reason "tool_calls"."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.calls:
        message["tool_calls"] = [call.message_entry() for call in reply.calls]
    else:
        message["content"] = reply.text
    completion_tokens = _completion_tokens(reply, len(_TOKEN.findall(reply.text)))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "standin",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": reply.prompt_tokens + completion_tokens,
        },
    }
