"""Failure classification (transient, permanent, unclassified) and the capped, jittered retry backoff."""

from __future__ import annotations

import errno
import itertools
import socket

import grpc
import psycopg
import pytest
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from botocore.exceptions import EndpointConnectionError
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import PoolTimeout
from ragstream_common.events import PermanentError
from ragstream_common.failures import FailureKind, classify
from ragstream_common.kafka.cloudevents import InvalidEvent
from ragstream_common.kafka.retry import Backoff

pytestmark = pytest.mark.unit

PERMANENT, TRANSIENT, UNCLASSIFIED = FailureKind.PERMANENT, FailureKind.TRANSIENT, FailureKind.UNCLASSIFIED


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="peer said no")


def _caused_by(outer: Exception, cause: BaseException) -> Exception:
    try:
        raise outer from cause
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        PermanentError("no tenant"),
        InvalidEvent("missing CloudEvents headers"),
        DecodeError("truncated"),
        psycopg.errors.InvalidTextRepresentation("bad vector"),  # a DataError: the same value is refused again
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_failures(exc: BaseException) -> None:
    assert classify(exc) is PERMANENT


@pytest.mark.parametrize(
    "exc",
    [
        KafkaConnectionError("broker gone"),
        KafkaTimeoutError(),
        NotLeaderForPartitionError(),
        RequestTimedOutError(),
        UnknownTopicOrPartitionError(),  # retriable: metadata not propagated yet
        psycopg.OperationalError("connection refused"),
        psycopg.errors.SerializationFailure("could not serialize"),
        PoolTimeout("couldn't get a connection after 30.00 sec"),
        _rpc_error(grpc.StatusCode.UNAVAILABLE),
        _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED),
        _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED),
        _rpc_error(grpc.StatusCode.ABORTED),
        TimeoutError(),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        ConnectionResetError(),
        OSError(errno.EHOSTUNREACH, "no route to host"),
        OSError(errno.ENETUNREACH, "network is unreachable"),
        socket.gaierror(socket.EAI_AGAIN, "temporary failure in name resolution"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_failures(exc: BaseException) -> None:
    assert classify(exc) is TRANSIENT


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        KeyError("missing"),
        CommitFailedError("rebalanced"),  # a KafkaError that is not retriable
        _rpc_error(grpc.StatusCode.INVALID_ARGUMENT),
        _rpc_error(grpc.StatusCode.INTERNAL),
        OSError(errno.ENOENT, "no such file"),
        socket.gaierror(socket.EAI_NONAME, "name or service not known"),
        psycopg.errors.UniqueViolation("duplicate key"),  # may be a race: a few attempts, not forever
    ],
    ids=lambda e: type(e).__name__,
)
def test_unclassified_failures(exc: BaseException) -> None:
    assert classify(exc) is UNCLASSIFIED


def test_the_cause_chain_decides_when_the_outer_error_says_nothing() -> None:
    assert classify(_caused_by(RuntimeError("store failed"), psycopg.OperationalError("server closed"))) is TRANSIENT
    assert classify(_caused_by(RuntimeError("x"), _caused_by(ValueError("y"), PermanentError("z")))) is PERMANENT
    # The outermost classifiable error wins: a handler that judged a timeout permanent is believed.
    assert classify(_caused_by(PermanentError("refused"), TimeoutError())) is PERMANENT


def test_an_implicit_context_is_not_a_cause() -> None:
    try:
        try:
            raise TimeoutError
        except TimeoutError:
            raise ValueError("bug while handling a timeout") from None
    except ValueError as exc:
        assert classify(exc) is UNCLASSIFIED


def test_exception_groups() -> None:
    both_transient = ExceptionGroup("tasks", [TimeoutError(), psycopg.OperationalError("down")])
    assert classify(both_transient) is TRANSIENT
    assert classify(ExceptionGroup("tasks", [TimeoutError(), PermanentError("bad")])) is PERMANENT
    assert classify(ExceptionGroup("tasks", [TimeoutError(), ValueError("bug")])) is UNCLASSIFIED
    assert classify(ExceptionGroup("outer", [ExceptionGroup("inner", [ConnectionResetError()])])) is TRANSIENT
    assert classify(_caused_by(RuntimeError("wrapped"), both_transient)) is TRANSIENT


def test_a_cause_cycle_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert classify(first) is UNCLASSIFIED


def test_drivers_that_were_never_imported_are_not_needed() -> None:
    """The extras are optional: classification imports none of them (it looks them up in sys.modules)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('psycopg', 'psycopg_pool', 'botocore', 'botocore.exceptions', 'httpx'):\n"
        "    sys.modules[name] = None\n"
        "from ragstream_common.failures import classify, FailureKind\n"
        "assert classify(TimeoutError()) is FailureKind.TRANSIENT\n"
        "assert classify(ValueError()) is FailureKind.UNCLASSIFIED\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- backoff ------------------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.2, cap_s=30.0, draw=lambda: 1.0)  # the top of each jitter range
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[:8] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6])
    assert delays[8:] == [30.0] * 4


@given(
    draws=st.lists(st.floats(min_value=0.0, max_value=0.999999), min_size=1, max_size=200),
    base=st.floats(min_value=0.001, max_value=5.0),
    cap=st.floats(min_value=0.001, max_value=120.0),
)
def test_full_jitter_stays_within_zero_and_the_capped_ceiling(draws: list[float], base: float, cap: float) -> None:
    backoff = Backoff(base_s=base, cap_s=cap, draw=iter(draws).__next__)
    for attempt, draw in enumerate(draws):
        delay = backoff.next_delay()
        ceiling = min(cap, base * 2.0**attempt)
        assert 0.0 <= delay <= cap
        assert delay == pytest.approx(draw * ceiling)


def test_a_long_outage_over_a_fake_clock_retries_forever_at_most_a_cap_apart() -> None:
    """A dependency down for ten minutes: retries never stop, never wait longer than the cap, and the first
    retry after it is back comes within one cap."""
    backoff = Backoff(base_s=0.2, cap_s=30.0, draw=itertools.cycle([0.5, 0.9, 0.1, 0.99]).__next__)
    clock, outage_ends, retries = 0.0, 600.0, []
    while clock < outage_ends:  # every attempt fails while the outage lasts
        delay = backoff.next_delay()
        assert 0.0 <= delay <= 30.0
        clock += delay
        retries.append(clock)
    assert len(retries) > 20  # retried without limit, not given up after a few attempts
    assert retries[-1] - outage_ends <= 30.0
    gaps = [later - earlier for earlier, later in itertools.pairwise(retries)]
    assert max(gaps) <= 30.0
    assert gaps[0] < 1.0  # short outages (a leader move) are retried quickly


def test_backoff_does_not_overflow_after_very_many_attempts() -> None:
    backoff = Backoff(base_s=0.2, cap_s=30.0, draw=lambda: 0.5, attempt=10_000)
    assert backoff.next_delay() == 15.0
