"""Embedding-model generations as pure rules (docs/embedding-generations.md): which vectors of an event the index
keeps, which vector of a query dense search uses, when a building generation becomes live, and what a rollback
brings back. The Postgres side is adapters/pg_generations.py; the re-embedding loop is reembed.py."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np


class GenerationState(enum.StrEnum):
    BUILDING = "building"
    LIVE = "live"
    RETIRED = "retired"
    FAILED = "failed"


@dataclass(frozen=True)
class Generation:
    id: int
    model: str
    dimensions: int
    state: GenerationState
    chunks_total: int = 0
    chunks_done: int = 0
    created_at: datetime | None = None
    live_at: datetime | None = None
    retired_at: datetime | None = None


class GenerationError(ValueError):
    """An operator request the generations' states do not allow."""


class VectorMismatch(ValueError):
    """A vector of a model the index builds, with another size than its generation's."""


@dataclass(frozen=True)
class Generations:
    """Every generation, as one read saw them."""

    all: tuple[Generation, ...] = ()

    @property
    def live(self) -> Generation | None:
        return next((g for g in self.all if g.state is GenerationState.LIVE), None)

    @property
    def building(self) -> Generation | None:
        return next((g for g in self.all if g.state is GenerationState.BUILDING), None)

    def indexed(self) -> list[Generation]:
        """The generations new chunks get vectors for: the live one and the one building."""
        return [g for g in (self.live, self.building) if g is not None]

    def knows(self, model: str) -> bool:
        return any(g.model == model for g in self.all if g.state is not GenerationState.FAILED)


def stored_models(primary_model: str, dimensions: Mapping[str, int], generations: Generations) -> dict[str, str]:
    """For the vectors of one event (model -> size; `primary_model` the event's own), which model name each is
    stored under: those of the live and building generations' models. A primary vector of a model no generation
    knows counts as the live generation's when its size fits: the index took any vector of the right size before
    generations existed, and events from such an embed service (or a test) still arrive."""
    stored: dict[str, str] = {}
    for generation in generations.indexed():
        size = dimensions.get(generation.model)
        if size is None:
            continue
        if size != generation.dimensions:
            raise VectorMismatch(
                f"model {generation.model!r} gives {size} dimensions, its generation stores {generation.dimensions}"
            )
        stored[generation.model] = generation.model
    live = generations.live
    primary_size = dimensions.get(primary_model)
    unknown_primary = primary_size is not None and not generations.knows(primary_model)
    if live is not None and live.model not in stored and unknown_primary:
        if primary_size != live.dimensions:
            raise VectorMismatch(
                f"model {primary_model!r} produces {primary_size} dimensions, the index stores {live.dimensions}"
            )
        stored[primary_model] = live.model
    return stored


def query_vector(
    primary_model: str, vectors: Mapping[str, np.ndarray], generations: Generations
) -> tuple[str, np.ndarray] | None:
    """The live generation's model and the query's vector for it (by the same rule as `stored_models`), or None
    when the query carries none (dense retrieval then has nothing to search with)."""
    live = generations.live
    if live is None:
        return None
    if live.model in vectors:
        return live.model, vectors[live.model]
    primary = vectors.get(primary_model)
    if primary is not None and not generations.knows(primary_model) and primary.shape == (live.dimensions,):
        return live.model, primary
    return None


def ready_to_switch(generation: Generation, missing: int) -> bool:
    """A building generation goes live once every chunk of the index has its vector."""
    return generation.state is GenerationState.BUILDING and missing == 0


def rollback_target(generations: Generations) -> Generation:
    """The generation a rollback makes live again: the one retired last."""
    retired = [g for g in generations.all if g.state is GenerationState.RETIRED]
    if not retired:
        raise GenerationError("no retired generation to roll back to")
    return max(retired, key=lambda g: (g.retired_at or datetime.min, g.id))


def check_activation(generations: Generations, generation_id: int) -> Generation:
    """A retired or failed generation may be (re)built towards live, while no other one builds."""
    target = next((g for g in generations.all if g.id == generation_id), None)
    if target is None:
        raise GenerationError(f"no generation {generation_id}")
    if target.state not in (GenerationState.RETIRED, GenerationState.FAILED):
        raise GenerationError(f"generation {generation_id} is {target.state.value}, not retired or failed")
    building = generations.building
    if building is not None:
        raise GenerationError(f"generation {building.id} ({building.model}) is building; let it finish first")
    if target.state is GenerationState.FAILED and generations.knows(target.model):
        raise GenerationError(f"another generation of {target.model} exists")
    return target


def wants_new_generation(generations: Generations, model: str) -> bool:
    """The embed service's primary model gets a generation of its own once, when no generation (in any state) has
    it: a rollback away from it or a cancelled build is not undone by the next check; `activate` brings it back."""
    return bool(model) and all(g.model != model for g in generations.all) and generations.building is None


def chunk_vector_rows(
    vectors: Sequence[Mapping[str, np.ndarray]], stored: Mapping[str, str]
) -> list[tuple[int, str, np.ndarray]]:
    """(index of the chunk, stored model, vector) rows of a document's chunks (each a model -> vector map), for
    the event models `stored_models` kept."""
    return [
        (position, target, chunk_vectors[source])
        for position, chunk_vectors in enumerate(vectors)
        for source, target in stored.items()
        if source in chunk_vectors
    ]
