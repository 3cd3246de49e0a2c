"""Embedding-model generations on SciFact train (docs/embedding-generations.md): nDCG@10 dense and hybrid for each
registry model, and the time to re-embed the corpus into a new generation from the stored chunk texts.

    uv run python benchmarks/generations.py                                  # the whole corpus, every train query
    uv run python benchmarks/generations.py --corpus-limit 1000 --queries 100   # a smoke run
    uv run python benchmarks/generations.py --database-url postgresql://...  # instead of a throwaway server

Through the services' own code: the corpus (title + text, one chunk per document) is indexed by
`PostgresChunkIndex` with all-MiniLM-L6-v2 vectors (the ONNX int8 backend, the service default) as generation 1;
then an in-process embed service (EmbedService over gRPC) whose EMBED_MODEL is wordllama-l2-supercat makes the
retrieve service's `Reembedder` build generation 2 from the stored texts and switch it in: the re-embed time is
that whole round (proposal, every chunk through Embed in batches, writes, switch). Searches go through
`hybrid_search` over `PostgresSearchIndex` (the live generation's vectors) with each model's query vectors. The
rollback to MiniLM (nothing to rebuild) is timed too. One JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from harness import finish
from rag.v1 import services_pb2_grpc
from ragstream_common.db import create_pool
from ragstream_common.migrate import apply_migrations
from ragstream_common.service_tokens import TokenMinter, generate_signing_key, load_private_key
from ragstream_embed.adapters.encoder import Encoder
from ragstream_embed.adapters.grpc_api import EmbedServicer
from ragstream_embed.adapters.served_models import ServedModels
from ragstream_embed.models import EncoderOptions
from ragstream_retrieve.adapters.grpc_clients import GrpcTextEmbedder
from ragstream_retrieve.adapters.pg_generations import PostgresGenerations
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.lexical import ENGLISH_STOPWORDS, LexicalAnalyzer
from ragstream_retrieve.models import RetrievalMode, SearchTuning
from ragstream_retrieve.reembed import Reembedder
from retrieval_lexical import (
    DEFAULT_DATASET,
    Dataset,
    abstract_document,
    database,
    evaluate,
    load_dataset,
    service_run,
)

MINILM, WORDLLAMA = "all-minilm-l6-v2", "wordllama-l2-supercat"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--queries", type=int, default=None, help="first N judged train queries (default: all)")
    parser.add_argument(
        "--corpus-limit", type=int, default=None, help="the judged documents plus the first N others (smoke runs)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="texts per Embed call while re-embedding")
    parser.add_argument("--database-url", default=None, help="default: a throwaway local Postgres")
    return parser.parse_args()


def limited(data: Dataset, limit: int | None) -> Dataset:
    """The queries' judged documents plus the first `limit` others (all of them when None)."""
    if limit is None:
        return data
    judged = {doc for relevant in data.qrels.values() for doc in relevant}
    keep = judged | set(list(data.corpus)[:limit])
    return Dataset({k: v for k, v in data.corpus.items() if k in keep}, data.queries, data.qrels)


def chunk_text(title: str, text: str) -> str:
    # What re-embedding replays is the stored chunk text: the title rides in it, so both models see the same.
    return f"{title}\n{text}" if title else text


async def index_corpus(url: str, data: Dataset, encoder: Encoder, analyzer: LexicalAnalyzer) -> dict[str, float]:
    texts = [chunk_text(title, text) for title, text in data.corpus.values()]
    started = time.perf_counter()
    vectors = await encoder.encode_documents(texts)
    embedded = time.perf_counter()
    pool = create_pool(url, max_size=2)
    await pool.open(wait=True)
    try:
        writer = PostgresChunkIndex(pool)
        for (doc_id, (title, _)), text, vector in zip(data.corpus.items(), texts, vectors, strict=True):
            model = (encoder.model_name, encoder.model_version)
            document = abstract_document(doc_id, title, text, vector, analyzer.term_frequencies(text), model)
            await writer.upsert_document(document)
    finally:
        await pool.close()
    return {"embed_s": round(embedded - started, 2), "index_s": round(time.perf_counter() - embedded, 2)}


async def evaluate_model(url: str, data: Dataset, query_vectors: np.ndarray, tuning: SearchTuning) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, mode in (("dense", RetrievalMode.DENSE), ("hybrid", RetrievalMode.HYBRID)):
        run, latencies = await service_run(url, data, mode, tuning, query_vectors)
        scores = evaluate(run, data.qrels)
        result[f"{name}_ndcg@10"] = round(scores["ndcg@10"], 4)
        result[f"{name}_recall@100"] = round(scores["recall@100"], 4)
        result[f"{name}_p50_ms"] = round(statistics.median(latencies), 2)
        print(f"    {name:7s} nDCG@10 {scores['ndcg@10']:.4f}  recall@100 {scores['recall@100']:.4f}", flush=True)
    return result


async def switch_to(store: PostgresGenerations, embedder: GrpcTextEmbedder, batch_size: int) -> float:
    """Seconds for the Reembedder to propose (if needed), build and switch in the embed service's model."""
    reembedder = Reembedder(store, embedder, batch_size=batch_size, step_chunks=10**9)
    started = time.perf_counter()
    await reembedder.propose()
    while await reembedder.step():
        pass
    return time.perf_counter() - started


async def measure(url: str, data: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    minilm = await asyncio.to_thread(Encoder.load, EncoderOptions(model=MINILM, batch_size=32))
    wordllama = await asyncio.to_thread(Encoder.load, EncoderOptions(model=WORDLLAMA, batch_size=32))
    tuning, analyzer = SearchTuning(), LexicalAnalyzer(stopwords=ENGLISH_STOPWORDS)
    questions = list(data.queries.values())
    summary: dict[str, Any] = {"corpus": len(data.corpus), "queries": len(data.queries)}
    try:
        print(f"  generation 1: {minilm.model_name} ({minilm.dimensions} dimensions)", flush=True)
        summary["minilm_index"] = await index_corpus(url, data, minilm, analyzer)
        summary["minilm"] = await evaluate_model(url, data, await minilm.encode_queries(questions), tuning)

        server = grpc.aio.server()
        served = ServedModels(wordllama, EncoderOptions(model=WORDLLAMA, batch_size=32))
        services_pb2_grpc.add_EmbedServiceServicer_to_server(EmbedServicer(served), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        minter = TokenMinter(load_private_key(generate_signing_key()), "bench", "retrieve", 300)
        embedder = GrpcTextEmbedder(f"127.0.0.1:{port}", minter, 120.0)
        pool = create_pool(url, max_size=4)
        await pool.open(wait=True)
        try:
            store = PostgresGenerations(pool)
            seconds = await switch_to(store, embedder, args.batch_size)
            live = (await store.load()).live
            assert live is not None and live.model == wordllama.model_name, live
            summary["reembed_s"] = round(seconds, 2)
            summary["reembed_chunks_per_s"] = round(len(data.corpus) / seconds, 1)
            print(f"  generation 2: {live.model} re-embedded and live in {seconds:.1f} s", flush=True)
            summary["wordllama"] = await evaluate_model(url, data, await wordllama.encode_queries(questions), tuning)
            await store.rollback()
            summary["rollback_s"] = round(await switch_to(store, embedder, args.batch_size), 2)
            live = (await store.load()).live
            assert live is not None and live.model == minilm.model_name, live
            print(f"  rollback to generation 1 in {summary['rollback_s']} s", flush=True)
        finally:
            await pool.close()
            await embedder.close()
            await server.stop(None)
            served.close()
    finally:
        minilm.close()
        wordllama.close()
    return summary


def main() -> None:
    args = parse_args()
    data = limited(load_dataset(args.dataset, args.queries), args.corpus_limit)
    print(f"SciFact train: {len(data.corpus)} documents, {len(data.queries)} judged queries", flush=True)
    with database(args.database_url) as url:
        apply_migrations(url)
        summary = asyncio.run(measure(url, data, args))
    finish("generations", summary)


if __name__ == "__main__":
    main()
