"""Hybrid search as a pure function over the `SearchIndex` port: candidates, fusion, hydration, de-duplication."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

from ragstream_common.stage_metrics import timed_stage

from ragstream_retrieve.fusion import FusedCandidate, fuse, remove_near_duplicates, single_ranking
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import (
    Candidate,
    RetrievalMode,
    SearchHit,
    SearchRequest,
    SearchTuning,
    StoredChunk,
)
from ragstream_retrieve.ports import SearchIndex


class MissingQueryVector(ValueError):
    """Dense and hybrid retrieval need the query's vector."""


async def hybrid_search(
    index: SearchIndex, analyzer: LexicalAnalyzer, request: SearchRequest, tuning: SearchTuning
) -> list[SearchHit]:
    """The best `request.top_k` distinct chunks of the tenant for the request's mode, best first."""
    if request.top_k <= 0:
        return []
    with timed_stage("search"):
        return await _search(index, analyzer, request, tuning)


async def _search(
    index: SearchIndex, analyzer: LexicalAnalyzer, request: SearchRequest, tuning: SearchTuning
) -> list[SearchHit]:
    use_dense = request.mode in (RetrievalMode.HYBRID, RetrievalMode.DENSE)
    use_lexical = request.mode in (RetrievalMode.HYBRID, RetrievalMode.LEXICAL)
    if use_dense and request.vector is None:
        raise MissingQueryVector(f"{request.mode.value} retrieval needs a query vector")
    depth = max(tuning.candidate_depth, request.top_k)
    dense, lexical = await asyncio.gather(
        _dense(index, request, depth) if use_dense else _nothing(),
        _lexical(index, analyzer, request, depth, tuning) if use_lexical else _nothing(),
    )
    if request.mode is RetrievalMode.HYBRID:
        fused = fuse(dense, lexical, tuning)
    else:
        fused = single_ranking(dense if use_dense else lexical, dense=use_dense)
    return await _distinct_hits(index, request, fused, tuning.dedupe_cosine)


async def _nothing() -> list[Candidate]:
    return []


async def _dense(index: SearchIndex, request: SearchRequest, depth: int) -> list[Candidate]:
    assert request.vector is not None
    # The model is passed only when the request names one: a SearchIndex may predate generations.
    if request.model:
        return await index.dense_candidates(
            request.tenant_id, request.vector, request.filters, depth, model=request.model
        )
    return await index.dense_candidates(request.tenant_id, request.vector, request.filters, depth)


async def _lexical(
    index: SearchIndex, analyzer: LexicalAnalyzer, request: SearchRequest, depth: int, tuning: SearchTuning
) -> list[Candidate]:
    # A term repeated in the query counts that many times (BM25 with linear query-term frequency).
    weights = {term: float(count) for term, count in Counter(analyzer.terms(request.text)).items()}
    if not weights:
        return []
    return await index.lexical_candidates(request.tenant_id, weights, request.filters, depth, tuning.bm25)


async def _distinct_hits(
    index: SearchIndex, request: SearchRequest, fused: Sequence[FusedCandidate], min_cosine: float
) -> list[SearchHit]:
    """Fetch fused candidates window by window until `top_k` survive de-duplication."""
    window = max(2 * request.top_k, 10)
    fetched: list[StoredChunk] = []
    distinct: list[StoredChunk] = []
    for start in range(0, len(fused), window):
        keys = [c.key for c in fused[start : start + window]]
        rows = await (
            index.fetch_chunks(request.tenant_id, keys, model=request.model)
            if request.model
            else index.fetch_chunks(request.tenant_id, keys)
        )
        # A chunk replaced between the candidate query and this fetch is simply skipped.
        fetched += [rows[key] for key in keys if key in rows]
        distinct = remove_near_duplicates(fetched, min_cosine)
        if len(distinct) >= request.top_k:
            break
    by_key = {c.key: c for c in fused}
    return [_hit(chunk, by_key[chunk.key], request) for chunk in distinct[: request.top_k]]


def _hit(chunk: StoredChunk, fused: FusedCandidate, request: SearchRequest) -> SearchHit:
    dense_score = fused.dense_score
    if dense_score is None and request.vector is not None and chunk.embedding.shape == request.vector.shape:
        # Lexical-only finds still get their cosine similarity: the vectors are at hand.
        dense_score = float(chunk.embedding @ request.vector)
    return SearchHit(chunk, fused.score, dense_score or 0.0, fused.lexical_score or 0.0)
