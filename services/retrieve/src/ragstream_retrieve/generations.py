"""Operator commands for embedding-model generations (docs/embedding-generations.md), with the retrieve service's
login (DATABASE_URL):

    python -m ragstream_retrieve.generations status      # every generation, its state and progress
    python -m ragstream_retrieve.generations rollback    # bring back the generation retired last
    python -m ragstream_retrieve.generations activate ID # rebuild a retired or failed generation towards live
    python -m ragstream_retrieve.generations cancel      # give up the generation building (the live one stays)

A generation brought back rebuilds the vectors it lacks (chunks indexed since it was retired) from the stored
texts, then switches in; the running retrieve service does the work, this command only changes states.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from ragstream_common.db import create_pool

from ragstream_retrieve.adapters.pg_generations import PostgresGenerations
from ragstream_retrieve.config import RetrieveSettings
from ragstream_retrieve.generations_model import Generation, GenerationError


def describe(generation: Generation) -> dict[str, object]:
    return {
        "id": generation.id,
        "model": generation.model,
        "dimensions": generation.dimensions,
        "state": generation.state.value,
        "chunks_done": generation.chunks_done,
        "chunks_total": generation.chunks_total,
        "created_at": generation.created_at.isoformat() if generation.created_at else None,
        "live_at": generation.live_at.isoformat() if generation.live_at else None,
        "retired_at": generation.retired_at.isoformat() if generation.retired_at else None,
    }


async def run(command: str, generation_id: int | None, database_url: str) -> list[dict[str, object]]:
    pool = create_pool(database_url, max_size=1, name="retrieve-generations")
    await pool.open(wait=True, timeout=30)
    try:
        store = PostgresGenerations(pool)
        if command == "rollback":
            await store.rollback()
        elif command == "activate":
            assert generation_id is not None
            await store.activate(generation_id)
        elif command == "cancel":
            await store.cancel()
        generations = await store.load()
        # Progress as of now for the building one (the service records it per step).
        result = [describe(g) for g in generations.all]
        building = generations.building
        if building is not None:
            total, missing = await store.progress(building.model)
            for entry in result:
                if entry["id"] == building.id:
                    entry.update(chunks_total=total, chunks_done=total - missing)
        return result
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None, database_url: str | None = None) -> int:
    """`database_url`: the retrieve service's (default: DATABASE_URL, as the service reads it)."""
    parser = argparse.ArgumentParser(prog="python -m ragstream_retrieve.generations", description=__doc__)
    parser.add_argument("command", choices=("status", "rollback", "activate", "cancel"))
    parser.add_argument("id", nargs="?", type=int, help="the generation (activate)")
    args = parser.parse_args(argv)
    if args.command == "activate" and args.id is None:
        parser.error("activate needs the generation id")
    try:
        result = asyncio.run(run(args.command, args.id, database_url or RetrieveSettings().database_url))
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
