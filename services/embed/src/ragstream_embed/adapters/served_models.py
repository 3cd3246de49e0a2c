"""The models the embed service serves: its primary (EMBED_MODEL) and those of the index's live and building
generations (docs/embedding-generations.md), so events carry a vector for each while a generation builds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace

from psycopg_pool import AsyncConnectionPool
from ragstream_common.lifecycle import sleep_or_stop
from ragstream_common.logs import get_logger

from ragstream_embed.adapters.encoder import Encoder
from ragstream_embed.models import EncoderOptions, model_spec

log = get_logger(__name__)
_INDEXED_MODELS = "SELECT model FROM embedding_generations WHERE state IN ('live', 'building') ORDER BY id"


class ServedModels:
    """The primary encoder and, loaded on first need, one encoder per other registry model."""

    def __init__(
        self, primary: Encoder, options: EncoderOptions, load: Callable[[EncoderOptions], Encoder] = Encoder.load
    ) -> None:
        self.primary = primary
        self._options = options
        self._load = load
        self._others: dict[str, Encoder] = {}
        self._wanted: tuple[str, ...] = ()
        self._loading = asyncio.Lock()

    def extras(self) -> list[Encoder]:
        """The encoders of the generations' models other than the primary, as of the last refresh."""
        return [self._others[name] for name in self._wanted if name in self._others]

    async def encoder(self, model: str) -> Encoder | None:
        """The encoder of `model` (key or recorded name; "" = the primary), loaded if needed; None if unknown."""
        if not model or model in (self.primary.model_name, self._options.model):
            return self.primary
        try:
            spec = model_spec(model)
        except ValueError:
            return None
        if spec.name == self.primary.model_name:
            return self.primary
        async with self._loading:
            if spec.name not in self._others:
                encoder = await asyncio.to_thread(self._load, replace(self._options, model=spec.key))
                self._others[spec.name] = encoder
                log.info("model loaded", model=encoder.model_name, dimensions=encoder.dimensions)
            return self._others[spec.name]

    async def refresh(self, indexed_models: Sequence[str]) -> None:
        """Serve the registry models among `indexed_models` (the live and building generations') besides the
        primary; a model not in the registry is skipped (retrieve then keeps the primary's vectors)."""
        wanted: list[str] = []
        for name in indexed_models:
            encoder = await self.encoder(name)
            if encoder is not None and encoder is not self.primary:
                wanted.append(encoder.model_name)
        if tuple(wanted) != self._wanted:
            log.info("serving models", primary=self.primary.model_name, extra=wanted)
        self._wanted = tuple(wanted)

    async def follow(self, pool: AsyncConnectionPool, stop: asyncio.Event, interval_s: float) -> None:
        """Refresh from the generations table every `interval_s` until `stop`; a failed read keeps the last set."""
        while not stop.is_set():
            try:
                async with pool.connection() as connection:
                    rows = await (await connection.execute(_INDEXED_MODELS)).fetchall()
                await self.refresh([row[0] for row in rows])
            except Exception as exc:  # the loop outlives a database outage
                log.warning("reading the embedding generations failed", error=repr(exc))
            await sleep_or_stop(stop, interval_s)

    def close(self) -> None:
        for encoder in self._others.values():
            encoder.close()
