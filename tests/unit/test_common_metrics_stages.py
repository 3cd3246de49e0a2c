"""`ragstream_stage_seconds` from the stages' own code, and the generate backends' token counts."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from rag.v1.queries_pb2 import ScoredChunk
from ragstream_common.stage_metrics import timed_stage
from ragstream_generate.backends.base import DraftAnswer
from ragstream_generate.backends.extractive import ExtractiveBackend
from ragstream_ingest.chunker import Chunker
from ragstream_ingest.extract import extract_document

pytestmark = pytest.mark.unit

FACT = "The Danube flows through ten countries before it reaches the Black Sea."


def observed(stage: str) -> float:
    return REGISTRY.get_sample_value("ragstream_stage_seconds_count", {"stage": stage}) or 0.0


def tokens(backend: str, direction: str) -> float:
    labels = {"backend": backend, "direction": direction}
    return REGISTRY.get_sample_value("ragstream_generate_tokens_total", labels) or 0.0


def test_a_failing_stage_is_timed_too() -> None:
    before = observed("index")
    with pytest.raises(RuntimeError), timed_stage("index"):
        raise RuntimeError("the transaction failed")
    assert observed("index") == before + 1


def test_ingest_times_parse_and_chunk() -> None:
    parse, chunk = observed("parse"), observed("chunk")
    document = extract_document(FACT.encode(), "text/plain", "danube.txt")
    Chunker().split(document.text)
    assert (observed("parse"), observed("chunk")) == (parse + 1, chunk + 1)


async def test_extractive_backend_counts_words_and_times_generate() -> None:
    source = ScoredChunk(chunk_id="c1", document_id="d1", title="Danube", text=FACT, score=0.9)
    question = "Where does the Danube flow?"
    generate, read, written = observed("generate"), tokens("extractive", "in"), tokens("extractive", "out")
    events = [event async for event in ExtractiveBackend().stream(question, [source])]
    draft = events[-1]
    assert isinstance(draft, DraftAnswer) and not draft.no_answer
    assert draft.tokens_in == len(question.split()) + len(FACT.split())
    assert draft.tokens_out == len(draft.text.split())
    assert tokens("extractive", "in") == read + draft.tokens_in
    assert tokens("extractive", "out") == written + draft.tokens_out
    assert observed("generate") == generate + 1
