"""The disaster-recovery drill of `make dr-drill`, small: 10 documents uploaded through the gateway and indexed by
the real pipeline (ingest, embed with the shipped model, retrieve) on a Kafka and Postgres of its own, backed up,
restored into a fresh Postgres (RTO by restore, exact), and rebuilt by replaying the documents topic into an empty
database (RTO by replay, same best hits and most of each top-k: drill.py says why not exact). Both RTOs are
printed as one JSON line, so every `make test` run records them.

The pass criterion's arithmetic is checked on its own first: a drill that fails must say so (the CLI exits 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ragstream_devstack.__main__ import main as devstack_main
from ragstream_devstack.drill import REPLAY_MIN_OVERLAP, compare_rankings, drill_passed

pytestmark = pytest.mark.integration

DOCUMENTS = 10


def test_replay_rankings_pass_on_the_same_best_hit_and_most_of_the_top_k() -> None:
    expected = [["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], ["k", "l", "m"]]
    tail_swapped = [["a", "b", "c", "d", "e", "f", "g", "h", "j", "i"], ["k", "l", "m"]]
    compared = compare_rankings(expected, tail_swapped, REPLAY_MIN_OVERLAP)
    assert compared["passed"] and compared["searches_equal"] == "1/2" and compared["top1_equal"] == "2/2"
    assert compared["min_overlap"] == 1.0
    best_hit_lost = compare_rankings(expected, [["b", "a", *expected[0][2:]], expected[1]], REPLAY_MIN_OVERLAP)
    assert not best_hit_lost["passed"] and best_hit_lost["top1_equal"] == "1/2"
    top_k_lost = compare_rankings(expected, [["a", "x", "y", "z", "w", "v", "u", "t", "s", "r"], expected[1]], 0.7)
    assert not top_k_lost["passed"] and top_k_lost["min_overlap"] == 0.1


def _figures(**changes: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "documents": 3,
        "index": {"indexed": 3},
        "restore": {"verified": True},
        "replay": {"passed": True},
    }
    for key, value in changes.items():
        figures[key] = {**figures[key], **value} if isinstance(value, dict) else value
    return figures


@pytest.mark.parametrize(
    ("changes", "passed"),
    [
        ({}, True),
        ({"restore": {"verified": False}}, False),
        ({"replay": {"passed": False}}, False),
        ({"index": {"indexed": 2}}, False),
    ],
)
def test_the_drill_passes_only_when_every_part_does(changes: dict[str, Any], passed: bool) -> None:
    assert drill_passed(_figures(**changes)) is passed


def test_the_small_drill_restores_exactly_and_rebuilds_by_replay(
    record_property: Callable[[str, object], None], tmp_path: Path
) -> None:
    # As `make dr-drill` runs it: the CLI, whose exit status is the verdict, and its figures in the report.
    report = tmp_path / "drill.json"
    status = devstack_main(["dr-drill", "--documents", str(DOCUMENTS), "--report", str(report)])
    figures = json.loads(report.read_text())
    line = {"dr_drill": {"documents": DOCUMENTS, "chunks": figures["index"]["chunks"], "rto_s": figures["rto_s"]}}
    print(json.dumps(line), flush=True)
    record_property("dr_drill", json.dumps(line["dr_drill"]))
    assert figures["index"]["indexed"] == DOCUMENTS
    restore, replay = figures["restore"], figures["replay"]
    assert restore["verified"] and restore["mismatches"] == [], restore
    assert replay["indexed"] == DOCUMENTS and replay["chunks"] == figures["index"]["chunks"], replay
    total = int(replay["top1_equal"].split("/")[1])
    assert total > 0 and replay["top1_equal"] == f"{total}/{total}", replay
    assert replay["min_overlap"] >= REPLAY_MIN_OVERLAP and replay["passed"], replay
    assert figures["passed"] is True and status == 0
    assert 0 < figures["rto_s"]["restore"] < 120 and 0 < figures["rto_s"]["replay"] < 600, figures["rto_s"]
