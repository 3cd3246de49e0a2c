"""Re-embedding by replay (docs/embedding-generations.md): the building generation gets a vector for every chunk
from the chunk's stored text (no fetch, no parse, no re-chunk), through the embed service's documents path; once
none lacks one, it switches in. The live generation is repaired the same way (a chunk indexed by an embed service
that did not yet serve its model). Runs as a background task of the retrieve service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

from ragstream_retrieve.generations_model import Generation, ready_to_switch, wants_new_generation
from ragstream_retrieve.ports import GenerationStore, TextEmbedder

log = get_logger(__name__)


@dataclass
class Reembedder:
    store: GenerationStore
    embedder: TextEmbedder
    batch_size: int = 128
    # Chunks re-embedded per step and generation: a step stays short, so a stop request is honoured soon.
    step_chunks: int = 2048

    async def propose(self) -> Generation | None:
        """A building generation for the embed service's primary model, when no generation has that model."""
        model, dimensions = await self.embedder.primary_model()
        if not wants_new_generation(await self.store.load(), model):
            return None
        created = await self.store.create(model, dimensions)
        if created is not None:
            log.info("embedding generation created", generation=created.id, model=model, dimensions=dimensions)
        return created

    async def step(self) -> bool:
        """One round: fill what the building and live generations lack (up to `step_chunks` each) and switch a
        complete building generation in. True when work remains."""
        generations = await self.store.load()
        more = await self._repair(generations.live)
        building = generations.building
        if building is None:
            return more
        more = await self._fill(building) or more
        total, missing = await self.store.progress(building.model)
        await self.store.record_progress(building.id, total, total - missing)
        if more or not ready_to_switch(building, missing):
            return True
        if await self.store.switch(building.id):
            log.info("embedding generation live", generation=building.id, model=building.model, chunks=total)
            return False
        return True  # a chunk arrived without the vector meanwhile: fill it, then try again

    async def _repair(self, live: Generation | None) -> bool:
        """Fill what the live generation lacks; a failure here (say, an embed service that cannot encode with
        the live model) is logged and never holds up a building generation."""
        if live is None:
            return False
        try:
            return await self._fill(live)
        except Exception as exc:  # the build goes on without the repair
            log.warning("repairing the live generation failed", model=live.model, error=repr(exc))
            return False

    async def _fill(self, generation: Generation) -> bool:
        """Re-embed up to `step_chunks` chunks lacking the generation's vector; True if more may lack it."""
        after, done = 0, 0
        while done < self.step_chunks:
            chunks = await self.store.missing(generation.model, after, self.batch_size)
            if not chunks:
                return False
            vectors = await self.embedder.embed_texts([c.text for c in chunks], generation.model)
            if vectors.shape != (len(chunks), generation.dimensions):
                raise ValueError(
                    f"embed service gave {vectors.shape} for {generation.model}, expected {generation.dimensions} wide"
                )
            await self.store.store_vectors(generation.model, chunks, vectors)
            after, done = chunks[-1].chunk_key, done + len(chunks)
        return True

    async def run(self, stop: asyncio.Event, interval_s: float = 5.0) -> None:
        """Until `stop`: propose, then step while there is work, then wait `interval_s`. A failure (the embed
        service away, a database error) is logged and retried next round; queries are never involved."""
        while not stop.is_set():
            try:
                await self.propose()
                while await self.step() and not stop.is_set():
                    pass
            except Exception as exc:  # the loop outlives any one failure
                log.warning("re-embedding round failed", error=repr(exc))
            await sleep_or_stop(stop, interval_s)
