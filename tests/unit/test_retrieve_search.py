"""hybrid_search over a mocked SearchIndex port: mode dispatch, fusion, hydration windows, de-duplication."""

from __future__ import annotations

from collections.abc import Sequence
from unittest.mock import AsyncMock

import numpy as np
import pytest
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import Candidate, RetrievalMode, SearchRequest, SearchTuning, StoredChunk
from ragstream_retrieve.search import MissingQueryVector, hybrid_search

pytestmark = pytest.mark.unit
DIMS = 4


def _unit(values: Sequence[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def _stored(key: int, vector: Sequence[float], sha: str | None = None) -> StoredChunk:
    return StoredChunk(
        key, f"chunk-{key}", f"doc-{key}", 1, "t", f"text {key}", 0, {"k": "v"}, sha or f"sha-{key}", _unit(vector)
    )


def _index(dense: list[Candidate], lexical: list[Candidate], chunks: dict[int, StoredChunk]) -> AsyncMock:
    index = AsyncMock()
    index.dense_candidates.return_value = dense
    index.lexical_candidates.return_value = lexical

    async def fetch(tenant_id: str, keys: Sequence[int]) -> dict[int, StoredChunk]:
        return {k: chunks[k] for k in keys if k in chunks}

    index.fetch_chunks.side_effect = fetch
    return index


def _request(mode: RetrievalMode, top_k: int = 3, text: str = "protein folding", vector: bool = True) -> SearchRequest:
    return SearchRequest("t1", text, top_k, mode, vector=_unit([1, 0, 0, 0]) if vector else None)


async def test_hybrid_fuses_normalised_scores_by_default() -> None:
    chunks = {k: _stored(k, [float(k == i) for i in (1, 2, 3, 4)]) for k in (1, 2, 3, 4)}
    dense = [Candidate(1, 0.9), Candidate(3, 0.7), Candidate(4, 0.5)]  # min-max: 1, 0.5, 0
    lexical = [Candidate(2, 8.0), Candidate(3, 6.0), Candidate(4, 2.0)]  # min-max: 1, 2/3, 0
    index = _index(dense, lexical, chunks)
    hits = await hybrid_search(index, LexicalAnalyzer(), _request(RetrievalMode.HYBRID), SearchTuning())
    # 3: (0.5 + 2/3) / 2, 1: (1 + 0) / 2, 2: (0 + 1) / 2 (ties: dense order first), 4: 0
    assert [(h.chunk.key, h.score) for h in hits] == [(3, pytest.approx(7 / 12)), (1, 0.5), (2, 0.5)]
    assert (hits[0].dense_score, hits[0].lexical_score) == (0.7, 6.0)


async def test_hybrid_fuses_both_retrievers_and_reports_their_scores() -> None:
    chunks = {1: _stored(1, [1, 0, 0, 0]), 2: _stored(2, [0, 1, 0, 0]), 3: _stored(3, [0.6, 0.8, 0, 0])}
    index = _index([Candidate(1, 0.99), Candidate(3, 0.6)], [Candidate(2, 8.0), Candidate(3, 4.0)], chunks)
    hits = await hybrid_search(index, LexicalAnalyzer(), _request(RetrievalMode.HYBRID), SearchTuning(fusion="rrf"))
    assert [h.chunk.key for h in hits] == [3, 1, 2]
    assert hits[0].score == pytest.approx(1 / 62 + 1 / 62)
    assert (hits[0].dense_score, hits[0].lexical_score) == (0.6, 4.0)
    assert (hits[1].dense_score, hits[1].lexical_score) == (0.99, 0.0)
    # Found only lexically, but its cosine to the query vector is still reported.
    assert hits[2].dense_score == pytest.approx(0.0, abs=1e-6) and hits[2].lexical_score == 8.0
    weights = index.lexical_candidates.await_args.args[1]
    assert weights == {"protein": 1.0, "fold": 1.0}


async def test_dense_mode_never_asks_the_lexical_index() -> None:
    index = _index([Candidate(1, 0.9)], [], {1: _stored(1, [1, 0, 0, 0])})
    hits = await hybrid_search(index, LexicalAnalyzer(), _request(RetrievalMode.DENSE), SearchTuning())
    assert [(h.chunk.key, h.score) for h in hits] == [(1, 0.9)]
    index.lexical_candidates.assert_not_awaited()


async def test_lexical_mode_needs_no_vector() -> None:
    index = _index([], [Candidate(2, 3.5)], {2: _stored(2, [0, 1, 0, 0])})
    request = _request(RetrievalMode.LEXICAL, vector=False)
    hits = await hybrid_search(index, LexicalAnalyzer(), request, SearchTuning())
    assert [(h.chunk.key, h.score, h.dense_score, h.lexical_score) for h in hits] == [(2, 3.5, 0.0, 3.5)]
    index.dense_candidates.assert_not_awaited()


async def test_a_query_of_stopwords_only_finds_nothing_lexically() -> None:
    index = _index([], [Candidate(2, 3.5)], {})
    request = _request(RetrievalMode.LEXICAL, text="the of and", vector=False)
    assert await hybrid_search(index, LexicalAnalyzer(), request, SearchTuning()) == []
    index.lexical_candidates.assert_not_awaited()


async def test_dense_and_hybrid_without_a_vector_are_refused() -> None:
    index = _index([], [], {})
    for mode in (RetrievalMode.DENSE, RetrievalMode.HYBRID):
        with pytest.raises(MissingQueryVector):
            await hybrid_search(index, LexicalAnalyzer(), _request(mode, vector=False), SearchTuning())


async def test_duplicates_are_skipped_and_more_candidates_fetched() -> None:
    # 12 dense candidates; 1..10 are copies of one text, so top_k=2 needs the second window.
    chunks = {k: _stored(k, [1, 0, 0, 0], sha="dup") for k in range(1, 11)}
    chunks |= {11: _stored(11, [0, 1, 0, 0]), 12: _stored(12, [0, 0, 1, 0])}
    index = _index([Candidate(k, 1 - k / 100) for k in range(1, 13)], [], chunks)
    hits = await hybrid_search(index, LexicalAnalyzer(), _request(RetrievalMode.DENSE, top_k=2), SearchTuning())
    assert [h.chunk.key for h in hits] == [1, 11]
    assert index.fetch_chunks.await_count == 2


async def test_candidate_depth_is_at_least_top_k() -> None:
    index = _index([], [], {})
    await hybrid_search(
        index, LexicalAnalyzer(), _request(RetrievalMode.HYBRID, top_k=50), SearchTuning(candidate_depth=10)
    )
    assert index.dense_candidates.await_args.args[3] == 50
    assert index.lexical_candidates.await_args.args[3] == 50


async def test_zero_top_k_returns_nothing_without_io() -> None:
    index = _index([], [], {})
    assert await hybrid_search(index, LexicalAnalyzer(), _request(RetrievalMode.HYBRID, top_k=0), SearchTuning()) == []
    index.dense_candidates.assert_not_awaited()
