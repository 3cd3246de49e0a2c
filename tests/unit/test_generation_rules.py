"""Embedding-model generations as pure rules and over in-memory ports: which vectors the index keeps, which query
vector dense search uses, the switch decision, rollback and activation, the re-embedding loop, and the embed
handlers' extra vectors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import pytest
from fakes import RecordingSink, envelope
from fakes.embed import DictEmbeddingCache, HashEncoder
from fakes.retrieve import ListSearchIndex, RecordingReplies
from rag.v1 import chunks_pb2, queries_pb2
from ragstream_common.messages import pack_vector, unpack_vector
from ragstream_embed.handlers import embed_chunk_batch, embed_query_batch
from ragstream_retrieve.generations_model import (
    Generation,
    GenerationError,
    Generations,
    GenerationState,
    VectorMismatch,
    check_activation,
    chunk_vector_rows,
    query_vector,
    ready_to_switch,
    rollback_target,
    stored_models,
    wants_new_generation,
)
from ragstream_retrieve.lexical import LexicalAnalyzer
from ragstream_retrieve.models import Candidate, MissingChunk, SearchFilters, StoredChunk
from ragstream_retrieve.querying import QueryResponder
from ragstream_retrieve.reembed import Reembedder

pytestmark = pytest.mark.unit
MINI, WORD = "mini", "word"
LIVE_MINI = Generation(1, MINI, 4, GenerationState.LIVE)
BUILDING_WORD = Generation(2, WORD, 3, GenerationState.BUILDING)
# After the switch: the word model live, the mini one retired.
SWITCHED = Generations(
    (replace(LIVE_MINI, state=GenerationState.RETIRED), replace(BUILDING_WORD, state=GenerationState.LIVE))
)


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


# --- which vectors the index keeps ----------------------------------------------------------------------------


def test_the_live_and_building_models_vectors_are_kept_under_their_names() -> None:
    generations = Generations((LIVE_MINI, BUILDING_WORD))
    assert stored_models(WORD, {WORD: 3, MINI: 4, "other": 5}, generations) == {WORD: WORD, MINI: MINI}


def test_an_unknown_primary_model_counts_as_the_live_one_when_its_size_fits() -> None:
    generations = Generations((LIVE_MINI,))
    assert stored_models("test-model", {"test-model": 4}, generations) == {"test-model": MINI}
    with pytest.raises(VectorMismatch, match="3 dimensions"):
        stored_models("test-model", {"test-model": 3}, generations)


def test_a_known_models_vector_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(VectorMismatch):
        stored_models(MINI, {MINI: 5}, Generations((LIVE_MINI,)))


def test_a_retired_models_primary_is_not_taken_for_the_live_one() -> None:
    live_word = replace(BUILDING_WORD, dimensions=4, state=GenerationState.LIVE)
    generations = Generations((replace(LIVE_MINI, state=GenerationState.RETIRED), live_word))
    assert stored_models(MINI, {MINI: 4}, generations) == {}


def test_chunk_vector_rows_follow_the_mapping() -> None:
    a, b = _unit(1, 0, 0, 0), _unit(0, 1, 0)
    rows = chunk_vector_rows([{MINI: a, WORD: b}, {MINI: a}], {MINI: MINI, WORD: WORD})
    assert [(index, model) for index, model, _ in rows] == [(0, MINI), (0, WORD), (1, MINI)]


# --- which query vector dense search uses --------------------------------------------------------------------


def test_the_query_vector_is_the_live_models() -> None:
    vectors = {WORD: _unit(1, 0, 0), MINI: _unit(1, 0, 0, 0)}
    chosen = query_vector(MINI, vectors, SWITCHED)
    assert chosen is not None and chosen[0] == WORD and chosen[1].shape == (3,)


def test_a_query_without_the_live_models_vector_has_none() -> None:
    assert query_vector(MINI, {MINI: _unit(1, 0, 0, 0)}, SWITCHED) is None
    assert query_vector(MINI, {MINI: _unit(1, 0, 0, 0)}, Generations()) is None


def test_an_unknown_primary_query_vector_of_the_live_size_is_used() -> None:
    chosen = query_vector("m", {"m": _unit(1, 0, 0, 0)}, Generations((LIVE_MINI,)))
    assert chosen is not None and chosen[0] == MINI


# --- switch, rollback, activation, proposals ------------------------------------------------------------------


def test_a_building_generation_switches_only_when_complete() -> None:
    assert ready_to_switch(BUILDING_WORD, 0)
    assert not ready_to_switch(BUILDING_WORD, 1)
    assert not ready_to_switch(LIVE_MINI, 0)


def test_rollback_brings_back_the_generation_retired_last() -> None:
    older = Generation(1, "a", 4, GenerationState.RETIRED, retired_at=datetime(2026, 1, 1, tzinfo=UTC))
    newer = Generation(2, "b", 4, GenerationState.RETIRED, retired_at=datetime(2026, 2, 1, tzinfo=UTC))
    live = Generation(3, "c", 4, GenerationState.LIVE)
    assert rollback_target(Generations((older, newer, live))) == newer
    with pytest.raises(GenerationError, match="no retired"):
        rollback_target(Generations((live,)))


def test_activation_needs_a_retired_or_failed_generation_and_no_build_under_way() -> None:
    retired = Generation(3, "old", 4, GenerationState.RETIRED)
    assert check_activation(Generations((LIVE_MINI, retired)), 3) == retired
    with pytest.raises(GenerationError, match="is live"):
        check_activation(Generations((LIVE_MINI, retired)), 1)
    with pytest.raises(GenerationError, match="building"):
        check_activation(Generations((LIVE_MINI, BUILDING_WORD, retired)), 3)
    with pytest.raises(GenerationError, match="no generation 9"):
        check_activation(Generations((LIVE_MINI,)), 9)


def test_a_new_primary_model_is_proposed_once() -> None:
    assert wants_new_generation(Generations((LIVE_MINI,)), WORD)
    assert not wants_new_generation(Generations((LIVE_MINI,)), MINI)
    # Rolled back from: stays retired until an operator activates it.
    retired_word = replace(BUILDING_WORD, state=GenerationState.RETIRED)
    assert not wants_new_generation(Generations((LIVE_MINI, retired_word)), WORD)
    # Cancelled: likewise.
    failed_word = replace(BUILDING_WORD, state=GenerationState.FAILED)
    assert not wants_new_generation(Generations((LIVE_MINI, failed_word)), WORD)
    # Another build under way: wait for it.
    assert not wants_new_generation(Generations((LIVE_MINI, BUILDING_WORD)), "third")


# --- the re-embedding loop over in-memory ports ---------------------------------------------------------------


@dataclass
class MemoryGenerations:
    """`GenerationStore` over a dict of chunks (key -> text) and their vectors by model."""

    generations: list[Generation]
    texts: dict[int, str]
    vectors: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    switches: list[int] = field(default_factory=list)

    async def load(self) -> Generations:
        return Generations(tuple(self.generations))

    async def create(self, model: str, dimensions: int) -> Generation | None:
        created = Generation(len(self.generations) + 1, model, dimensions, GenerationState.BUILDING)
        self.generations.append(created)
        return created

    async def progress(self, model: str) -> tuple[int, int]:
        return len(self.texts), sum((key, model) not in self.vectors for key in self.texts)

    async def record_progress(self, generation_id: int, total: int, done: int) -> None:
        self.generations = [
            replace(g, chunks_total=total, chunks_done=done) if g.id == generation_id else g for g in self.generations
        ]

    async def missing(self, model: str, after_key: int, limit: int) -> list[MissingChunk]:
        keys = sorted(k for k in self.texts if k > after_key and (k, model) not in self.vectors)
        return [MissingChunk("t1", k, self.texts[k]) for k in keys[:limit]]

    async def store_vectors(self, model: str, chunks: Sequence[MissingChunk], vectors: np.ndarray) -> None:
        for chunk, vector in zip(chunks, vectors, strict=True):
            self.vectors[(chunk.chunk_key, model)] = vector

    async def switch(self, generation_id: int) -> bool:
        self.switches.append(generation_id)
        self.generations = [self._switched(g, generation_id) for g in self.generations]
        return True

    @staticmethod
    def _switched(generation: Generation, generation_id: int) -> Generation:
        if generation.state is GenerationState.LIVE:
            return replace(generation, state=GenerationState.RETIRED)
        if generation.id == generation_id:
            return replace(generation, state=GenerationState.LIVE)
        return generation


@dataclass
class ModelEmbedder:
    """`TextEmbedder` with HashEncoders by model; the primary is `primary`."""

    encoders: dict[str, HashEncoder]
    primary: str
    calls: list[tuple[str, int]] = field(default_factory=list)

    async def embed_texts(self, texts: Sequence[str], model: str) -> np.ndarray:
        self.calls.append((model, len(texts)))
        return await self.encoders[model].encode_documents(texts)

    async def primary_model(self) -> tuple[str, int]:
        return self.primary, self.encoders[self.primary].dimensions


def _embedder(primary: str = WORD) -> ModelEmbedder:
    return ModelEmbedder({MINI: HashEncoder(MINI, dimensions=4), WORD: HashEncoder(WORD, dimensions=3)}, primary)


async def test_a_new_primary_model_is_built_from_stored_texts_then_switched_in() -> None:
    store = MemoryGenerations([LIVE_MINI], {k: f"text {k}" for k in range(1, 8)})
    for key in store.texts:
        store.vectors[(key, MINI)] = _unit(1, 0, 0, 0)
    embedder = _embedder()
    reembedder = Reembedder(store, embedder, batch_size=3)
    created = await reembedder.propose()
    assert created is not None and created.model == WORD and created.dimensions == 3
    assert await reembedder.propose() is None  # proposed once
    while await reembedder.step():
        pass
    assert embedder.calls == [(WORD, 3), (WORD, 3), (WORD, 1)]
    assert store.switches == [created.id]
    live = (await store.load()).live
    assert live is not None and live.model == WORD
    assert all((key, WORD) in store.vectors for key in store.texts)


async def test_the_live_generation_is_repaired_and_nothing_switches_without_a_build() -> None:
    store = MemoryGenerations([LIVE_MINI], {1: "a", 2: "b"})
    store.vectors[(1, MINI)] = _unit(1, 0, 0, 0)
    embedder = _embedder(primary=MINI)
    reembedder = Reembedder(store, embedder)
    assert await reembedder.propose() is None
    assert await reembedder.step() is False  # filled, nothing left
    assert embedder.calls == [(MINI, 1)] and (2, MINI) in store.vectors and store.switches == []


async def test_a_wrong_sized_answer_from_the_embed_service_stores_nothing() -> None:
    store = MemoryGenerations([LIVE_MINI, replace(BUILDING_WORD, dimensions=5)], {1: "a"})
    store.vectors[(1, MINI)] = _unit(1, 0, 0, 0)
    with pytest.raises(ValueError, match="expected 5 wide"):
        await Reembedder(store, _embedder()).step()
    assert (1, WORD) not in store.vectors and store.switches == []


async def test_a_long_build_takes_several_bounded_rounds_and_waits_for_a_refused_switch() -> None:
    @dataclass
    class RefusingSwitch(MemoryGenerations):
        refusals: int = 1

        async def switch(self, generation_id: int) -> bool:
            if self.refusals:
                self.refusals -= 1
                return False  # a chunk arrived without the vector meanwhile
            return await super().switch(generation_id)

    store = RefusingSwitch([BUILDING_WORD], {k: f"text {k}" for k in range(1, 6)})
    reembedder = Reembedder(store, _embedder(), batch_size=1, step_chunks=2)
    rounds = [await reembedder.step() for _ in range(4)]
    # No live generation to repair; 2 chunks a round, then a complete build whose switch is refused once.
    assert rounds == [True, True, True, False]
    assert store.switches == [BUILDING_WORD.id]
    assert (await store.load()).live == replace(
        BUILDING_WORD, state=GenerationState.LIVE, chunks_total=5, chunks_done=5
    )


async def test_a_failing_repair_of_the_live_generation_does_not_hold_up_the_build() -> None:
    store = MemoryGenerations([LIVE_MINI, BUILDING_WORD], {1: "a"})
    embedder = ModelEmbedder({WORD: HashEncoder(WORD, dimensions=3)}, WORD)  # cannot encode with MINI
    assert await Reembedder(store, embedder).step() is False
    assert store.switches == [BUILDING_WORD.id] and (1, WORD) in store.vectors


async def test_the_background_loop_outlives_a_failed_round_and_stops_when_asked() -> None:
    @dataclass
    class FailingOnce(MemoryGenerations):
        failed: bool = False

        async def load(self) -> Generations:
            if not self.failed:
                self.failed = True
                raise ConnectionError("database away")
            return await super().load()

    store = FailingOnce([LIVE_MINI], {1: "a", 2: "b"})
    reembedder = Reembedder(store, _embedder(primary=MINI), batch_size=1, step_chunks=1)
    stop = asyncio.Event()
    loop = asyncio.create_task(reembedder.run(stop, interval_s=0.01))
    for _ in range(200):
        if {(1, MINI), (2, MINI)} <= store.vectors.keys():
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(loop, 1)
    assert {(1, MINI), (2, MINI)} <= store.vectors.keys()


# --- the query handler picks the live generation's vector ------------------------------------------------------


@dataclass
class FixedGenerations:
    generations: Generations

    async def current(self) -> Generations:
        return self.generations


@dataclass
class ModelSearchIndex(ListSearchIndex):
    """ListSearchIndex that also records the model each dense search and fetch names."""

    models: list[str | None] = field(default_factory=list)

    async def dense_candidates(  # type: ignore[override]
        self, tenant_id: str, vector: np.ndarray, filters: SearchFilters, limit: int, model: str | None = None
    ) -> list[Candidate]:
        self.models.append(model)
        return await super().dense_candidates(tenant_id, vector, filters, limit)

    async def fetch_chunks(  # type: ignore[override]
        self, tenant_id: str, keys: Sequence[int], model: str | None = None
    ) -> dict[int, StoredChunk]:
        return await super().fetch_chunks(tenant_id, keys)


def _stored(key: int, vector: np.ndarray) -> StoredChunk:
    return StoredChunk(key, f"c{key}", "d1", 1, "", f"text {key}", 0, {}, f"h{key}", vector)


async def test_queries_search_with_the_live_models_vector_or_fall_back_to_bm25() -> None:
    index = ModelSearchIndex([("t1", _stored(1, _unit(1, 0, 0)))])
    responder = QueryResponder(
        index, LexicalAnalyzer(), RecordingSink(), RecordingReplies(), generations=FixedGenerations(SWITCHED)
    )
    query = queries_pb2.QueryRequested(query_id="q", tenant_id="t1", question="text", top_k=3)
    extra = [chunks_pb2.ModelVector(model=WORD, vector=pack_vector(_unit(1, 0, 0)), dimensions=3)]
    hits = await responder.search(query, pack_vector(_unit(1, 0, 0, 0)), MINI, extra)
    assert [h.chunk.key for h in hits] == [1] and index.dense_calls[-1].vector.shape == (3,)
    assert index.models == [WORD]
    # The live model's vector missing: hybrid becomes lexical, still answering.
    dense_calls = len(index.dense_calls)
    hits = await responder.search(query, pack_vector(_unit(1, 0, 0, 0)), MINI, [])
    assert [h.chunk.key for h in hits] == [1] and len(index.dense_calls) == dense_calls


# --- the embed handlers carry a vector per served model -------------------------------------------------------


async def test_chunks_and_queries_carry_the_extra_models_vectors() -> None:
    primary, extra = HashEncoder(WORD, dimensions=3), HashEncoder(MINI, dimensions=4)
    sink = RecordingSink()
    ready = chunks_pb2.ChunksReady(tenant_id="t1", document_id="d1", version=1)
    ready.chunks.append(chunks_pb2.Chunk(chunk_id="c0", text="hello", content_sha256="h0"))
    cache = DictEmbeddingCache()
    await embed_chunk_batch([envelope(ready)], primary, cache, sink, [extra])
    embedded = sink.messages()[0]
    assert embedded.model == WORD and embedded.dimensions == 3
    [chunk] = embedded.chunks
    assert len(unpack_vector(chunk.vector)) == 3
    assert [(v.model, v.dimensions) for v in chunk.extra_vectors] == [(MINI, 4)]
    np.testing.assert_allclose(unpack_vector(chunk.extra_vectors[0].vector), extra.vector("hello"), rtol=1e-6)
    # Cached per model: a second pass encodes nothing.
    await embed_chunk_batch([envelope(ready)], primary, cache, RecordingSink(), [extra])
    assert len(primary.document_calls) == 1 and len(extra.document_calls) == 1

    query_sink = RecordingSink()
    question = queries_pb2.QueryRequested(query_id="q", tenant_id="t1", question="hi")
    await embed_query_batch([envelope(question)], primary, query_sink, [extra])
    [query] = query_sink.messages()
    assert query.model == WORD and [(v.model, v.dimensions) for v in query.extra_vectors] == [(MINI, 4)]


def test_the_operator_command_needs_an_id_to_activate(capsys: pytest.CaptureFixture[str]) -> None:
    from ragstream_retrieve.generations import main

    with pytest.raises(SystemExit) as exited:
        main(["activate"], database_url="postgresql://unused")
    assert exited.value.code == 2 and "activate needs the generation id" in capsys.readouterr().err
