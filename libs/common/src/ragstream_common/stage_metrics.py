"""`ragstream_stage_seconds{stage}`: the latency of each pipeline stage, one histogram shared by every service.

One metric, not one per service, so a dashboard breaks a document's or a query's time down by stage with one
query. Stages (a closed set, so the label stays bounded): parse and chunk (ingest), embed_batch and query_embed
(embed), index and search (retrieve), generate (generate).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import Histogram

Stage = Literal["parse", "chunk", "embed_batch", "query_embed", "index", "search", "generate"]

STAGE_SECONDS = Histogram(
    "ragstream_stage_seconds",
    "Duration of one pipeline stage: parse, chunk, embed_batch, query_embed, index, search, generate",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


def declare_stages(*stages: Stage) -> None:
    """Export a service's stages at zero from the start, so rates and alerts see them before the first event."""
    for stage in stages:
        STAGE_SECONDS.labels(stage)


@contextmanager
def timed_stage(stage: Stage) -> Iterator[None]:
    """Observe the block's duration under `stage`, also when it raises (failed work took that time too)."""
    with STAGE_SECONDS.labels(stage).time():
        yield
