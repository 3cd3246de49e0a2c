"""Is a failure worth retrying? One classification for every consumer, over the exception and its causes.

PERMANENT: the event can never succeed (`PermanentError`, an undecodable record, a broken contract): dead-letter it.
TRANSIENT: a dependency is down or slow (a broker leader moving, Postgres restarting, a gRPC peer unavailable,
a network timeout): retry without limit, the event is fine. UNCLASSIFIED: anything else (most likely a bug):
a few attempts, then dead-letter.

Pure: no I/O. The optional drivers (psycopg, psycopg_pool, botocore, grpc, httpx) and our CloudEvents binding
are looked up in `sys.modules` only, never imported: an exception of a library that was never imported cannot be
raised, so a service without the `postgres` or `s3` extra classifies the same way.
"""

from __future__ import annotations

import errno
import socket
import sys
from enum import StrEnum
from typing import Any

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from google.protobuf.message import DecodeError, EncodeError

from ragstream_common.events import PermanentError


class FailureKind(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    UNCLASSIFIED = "unclassified"


# Socket errors that say "the other side is not there right now", not "you asked for something wrong".
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENETRESET,
        errno.EADDRNOTAVAIL,
    }
)
_TRANSIENT_GRPC_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})


def classify(exc: BaseException) -> FailureKind:
    """The kind of `exc`: the outermost exception of its `__cause__` chain that says something decides.

    An ExceptionGroup (a TaskGroup in a handler) is PERMANENT when any member is, TRANSIENT when all are,
    otherwise UNCLASSIFIED.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _group_kind(current) if isinstance(current, BaseExceptionGroup) else _own_kind(current)
        if kind is not FailureKind.UNCLASSIFIED:
            return kind
        current = current.__cause__
    return FailureKind.UNCLASSIFIED


def _group_kind(group: BaseExceptionGroup[BaseException]) -> FailureKind:
    kinds = {classify(member) for member in group.exceptions}
    if FailureKind.PERMANENT in kinds:
        return FailureKind.PERMANENT
    if kinds == {FailureKind.TRANSIENT}:
        return FailureKind.TRANSIENT
    return FailureKind.UNCLASSIFIED


def _own_kind(exc: BaseException) -> FailureKind:
    """The kind of `exc` alone, ignoring its causes."""
    if _is_permanent(exc):
        return FailureKind.PERMANENT
    if _is_transient(exc):
        return FailureKind.TRANSIENT
    return FailureKind.UNCLASSIFIED


def _is_permanent(exc: BaseException) -> bool:
    if isinstance(exc, PermanentError | DecodeError | EncodeError):
        return True
    # Looked up, not imported: the Kafka package imports this module (its consumer classifies).
    if _is_instance(exc, "ragstream_common.kafka.cloudevents", "InvalidEvent"):
        return True
    # A value the database refuses (wrong vector dimension, bad encoding): the same value is refused again.
    data_error = _attribute("psycopg", "DataError")
    return data_error is not None and isinstance(exc, data_error)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaConnectionError | KafkaTimeoutError)
    # TimeoutError and ConnectionError (both OSErrors) first: a timeout carries no errno.
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return True
    if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN:  # DNS says "try again"
        return True
    if _is_instance(exc, "psycopg", "OperationalError") or _is_instance(exc, "psycopg_pool", "PoolTimeout"):
        return True
    if _is_instance(exc, "botocore.exceptions", "EndpointConnectionError") or _is_instance(
        exc, "botocore.exceptions", "ConnectTimeoutError"
    ):
        return True
    if _is_instance(exc, "httpx", "TransportError"):
        return True
    return _is_transient_grpc(exc)


def _is_transient_grpc(exc: BaseException) -> bool:
    if not _is_instance(exc, "grpc.aio", "AioRpcError"):
        return False
    code: Any = exc.code()  # type: ignore[attr-defined]  # AioRpcError, checked above without importing grpc
    return getattr(code, "name", "") in _TRANSIENT_GRPC_CODES


def _is_instance(exc: BaseException, module: str, name: str) -> bool:
    cls = _attribute(module, name)
    return cls is not None and isinstance(exc, cls)


def _attribute(module: str, name: str) -> type[BaseException] | None:
    """`module.name` when the module was already imported by someone, else None (never imports)."""
    loaded = sys.modules.get(module)
    found = getattr(loaded, name, None) if loaded is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None
