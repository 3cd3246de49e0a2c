"""Usage records (ragstream_common.usage_records): known metrics only, zeros left out, dated by their cause."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ragstream_common.usage_records import USAGE_METRICS, usage_record

pytestmark = pytest.mark.unit


def test_a_record_carries_its_tenant_id_source_and_nonzero_quantities() -> None:
    record = usage_record("t1", "q1:tokens", "generate", tokens_in=12, tokens_out=0)
    assert (record.tenant_id, record.usage_id, record.source) == ("t1", "q1:tokens", "generate")
    assert dict(record.quantities) == {"tokens_in": 12}
    assert record.occurred_at.seconds > 0  # now, for a fact without a cause of its own


def test_it_is_dated_by_the_cause_it_is_given() -> None:
    stamp = Timestamp(seconds=1_790_000_000)
    assert usage_record("t", "u", "s", occurred_at=stamp, questions=1).occurred_at == stamp
    when = datetime(2026, 11, 1, 12, 0, 30, tzinfo=UTC)
    assert usage_record("t", "u", "s", occurred_at=when, questions=1).occurred_at.ToDatetime(UTC) == when
    # An unset timestamp (a message field never filled in) means now, not 1970.
    assert usage_record("t", "u", "s", occurred_at=Timestamp(), questions=1).occurred_at.seconds > 0


def test_unknown_metrics_are_refused() -> None:
    with pytest.raises(ValueError, match="questionz"):
        usage_record("t", "u", "s", questionz=1)


def test_the_metrics_are_exactly_those_usage_minutes_accepts() -> None:
    """The one list (gateway and metering import it) against migration 0012's CHECK."""
    import re
    from importlib import resources

    sql = (resources.files("ragstream_common.migrations") / "0012_usage.sql").read_text()
    check = re.search(r"metric\s+text NOT NULL CHECK \(metric IN \(([^)]*)\)\)", sql)
    assert check is not None
    assert set(re.findall(r"'([a-z_]+)'", check.group(1))) == set(USAGE_METRICS)
