"""The audit trail of the HTTP API: one audit row for every call that changes something or asks a question,
every refused credential and every admin call (reads too), with actor, client address, outcome and trace id.

`AuditTrail` is an ASGI middleware, so it sees each route's final status, the authentication dependencies'
refusals included, without an edit per route. The dependencies and a few routes leave notes for it on the
current call (`note_subject`, `note_admin`, `note_question`). One row per call: code that writes the call's row
itself (the refusals of a known key, admin reads) says so with `mark_recorded`; a call that succeeded and
recorded what it did (`api_key.create`, `document.create`...: the writers call `note_described`) is described by
those rows. Everything else, failed calls included, gets the trail's row: `<METHOD> <route>` with its status.

Which chain: the tenant a credential stands behind; an admin call's tenant when it succeeded (a failed one may
name a tenant that does not exist); anything else, unknown keys included, the platform's (`_platform`), so an
unauthenticated caller can never write into a tenant's chain. Throttled calls (429) are counted in metrics, not
audited one by one: a flood must not turn the audit log into its amplifier.

The row is written after the response went out (the caller does not wait for it) through a group commit
writer of its own, whose rows gather for GATEWAY_AUDIT_TRAIL_COMMIT_WINDOW_MS, awaited in the request's own
task, so a graceful shutdown still waits for it; if the database refuses it, the whole entry goes to the error
log. Questions are recorded as their SHA-256 unless the tenant opted in
to the text (`audit_question_text`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from ragstream_common.logs import get_logger
from ragstream_common.tracing import trace_id_hex
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragstream_gateway.audit_chain import ChainHead, ChainRow
from ragstream_gateway.correlation import correlation_id
from ragstream_gateway.models import TENANT_ID_PATTERN
from ragstream_gateway.ports import AuditEntry, AuditLog, AuditStore
from ragstream_gateway.security import PLATFORM_TENANT, extract_api_key, reserved_tenant

log = get_logger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_PREFIX = "/v1/admin"
TENANT_ID = re.compile(TENANT_ID_PATTERN)
MAX_RESOURCE_CHARS = 512
MAX_QUESTION_CHARS = 8192
SETTINGS_TTL_S = 30.0


@dataclass
class CallNotes:
    """What the current call's dependencies and route found out, for its audit row."""

    trace_id: str = ""
    tenant_id: str | None = None
    actor: str | None = None
    admin: bool = False
    client_ip: str | None = None
    question: str | None = None
    # The call's own row is written (explicitly, with its outcome): the trail adds none.
    recorded: bool = False
    # Some entry was recorded during the call (document.create...): on success that row describes it.
    described: bool = False
    details: dict[str, Any] = field(default_factory=dict)


_CURRENT: ContextVar[CallNotes | None] = ContextVar("ragstream_audit_call", default=None)


def note_subject(tenant_id: str, actor: str, client_ip: str) -> None:
    """A tenant's credential was accepted: the call's row goes to that tenant's chain."""
    if notes := _CURRENT.get():
        notes.tenant_id, notes.actor, notes.client_ip = tenant_id, actor, client_ip


def note_admin(actor: str, client_ip: str) -> None:
    """An admin credential was accepted."""
    if notes := _CURRENT.get():
        notes.admin, notes.actor, notes.client_ip = True, actor, client_ip


def note_question(question: str) -> None:
    if notes := _CURRENT.get():
        notes.question = question


def mark_recorded() -> None:
    """The current call's row was written by its own code (with its outcome): the trail adds none."""
    if notes := _CURRENT.get():
        notes.recorded = True


def note_described() -> None:
    """An audit entry was recorded during the current call (the audit writers call this)."""
    if notes := _CURRENT.get():
        notes.described = True


class QuestionTextPolicy(Protocol):
    async def question_text(self, tenant_id: str) -> bool:
        """Whether the tenant opted in to question text in its audit log."""
        ...


class CachedAuditStore:
    """An `AuditStore` whose opt-in answers are kept `ttl_s` per tenant (a change made through another replica
    applies here within that; through this one, at once)."""

    def __init__(self, store: AuditStore, ttl_s: float = SETTINGS_TTL_S) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._opted_in: dict[str, tuple[float, bool]] = {}

    async def question_text(self, tenant_id: str) -> bool:
        cached = self._opted_in.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        allowed = await self._store.question_text(tenant_id)
        if len(self._opted_in) >= 10_000:
            self._opted_in.clear()
        self._opted_in[tenant_id] = (time.monotonic() + self._ttl_s, allowed)
        return allowed

    async def set_question_text(self, tenant_id: str, enabled: bool, entry: AuditEntry) -> bool:
        changed = await self._store.set_question_text(tenant_id, enabled, entry)
        self._opted_in.pop(tenant_id, None)
        return changed

    async def chain_head(self, tenant_id: str) -> ChainHead | None:
        return await self._store.chain_head(tenant_id)

    async def chain_rows(self, tenant_id: str, *, after_seq: int, limit: int) -> list[ChainRow]:
        return await self._store.chain_rows(tenant_id, after_seq=after_seq, limit=limit)


def outcome_of(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "error" if status >= 500 else "refused"


def recorded_call(method: str, path: str, status: int) -> bool:
    """Admin calls, calls that change something or ask a question (POST...), and refused credentials; not
    throttled calls (429) nor CORS preflights."""
    if status == 429 or method == "OPTIONS":
        return False
    return path.startswith(ADMIN_PREFIX) or method not in SAFE_METHODS or status in (401, 403)


class AuditTrail:
    def __init__(
        self,
        app: ASGIApp,
        *,
        audit: AuditLog,
        client_address: Callable[[Request], str],
        questions: QuestionTextPolicy | None = None,
    ) -> None:
        self.app = app
        self._audit = audit
        self._client_address = client_address
        self._questions = questions
        self._background: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        notes = CallNotes(trace_id=trace_id_hex())
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = _CURRENT.set(notes)
        try:
            await self.app(scope, receive, send_with_status)
        except asyncio.CancelledError:
            task = asyncio.get_running_loop().create_task(self._record(scope, notes, status))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        except Exception:
            await self._record(scope, notes, 500)
            raise
        finally:
            _CURRENT.reset(token)
        await self._record(scope, notes, status)

    async def _record(self, scope: Scope, notes: CallNotes, status: int) -> None:
        if notes.recorded or (notes.described and status < 400):
            return
        if not recorded_call(scope["method"], scope["path"], status):
            return
        entry = await self._entry(Request(scope), notes, status)
        try:
            await self._audit.record(entry)
        except Exception as exc:
            # The last copy of the entry is the error log (never a question's text).
            log.error("audit entry lost", error=repr(exc), **_loggable(entry))

    async def _entry(self, request: Request, notes: CallNotes, status: int) -> AuditEntry:
        route = getattr(request.scope.get("route"), "path", None) or "(unmatched)"
        details: dict[str, Any] = {"status": status, **notes.details}
        tenant_id, actor = PLATFORM_TENANT, "anonymous"
        if notes.tenant_id is not None:
            tenant_id, actor = notes.tenant_id, notes.actor or actor
        elif notes.admin:
            actor = notes.actor or actor
            named = str(request.path_params.get("tenant_id", ""))
            if status < 400 and TENANT_ID.match(named) and not reserved_tenant(named):
                tenant_id = named
            elif named:
                details["tenant_id"] = named[:64]
        elif status == 401:
            details["reason"] = "missing" if extract_api_key(request.headers) is None else "unknown_credential"
        if notes.question is not None:
            details.update(await self._question(tenant_id, notes.question))
        correlation = correlation_id(request.scope)
        if correlation != notes.trace_id:
            details["correlation_id"] = correlation
        return AuditEntry(
            tenant_id,
            actor,
            f"{request.method} {route}",
            request.url.path[:MAX_RESOURCE_CHARS],
            notes.client_ip if notes.client_ip is not None else self._client_address(request),
            details,
            outcome=outcome_of(status),
            trace_id=notes.trace_id,
        )

    async def _question(self, tenant_id: str, question: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "question_sha256": hashlib.sha256(question.encode()).hexdigest(),
            "question_chars": len(question),
        }
        try:
            opted_in = self._questions is not None and await self._questions.question_text(tenant_id)
        except Exception as exc:  # unknown: keep to the hash, the private choice
            log.warning("audit settings unavailable", tenant_id=tenant_id, error=repr(exc))
            opted_in = False
        if opted_in:
            found["question"] = question[:MAX_QUESTION_CHARS]
        return found


def _loggable(entry: AuditEntry) -> dict[str, Any]:
    return {
        "tenant_id": entry.tenant_id,
        "actor": entry.actor,
        "action": entry.action,
        "resource": entry.resource,
        "client_ip": entry.client_ip,
        "outcome": entry.outcome,
        "trace_id": entry.trace_id,
        "details": {key: value for key, value in entry.details.items() if key != "question"},
    }
