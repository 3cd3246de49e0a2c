"""Offline retrieval study on SciFact (BEIR layout): the retrieve service's Postgres BM25 against bm25s and
Postgres full-text search (ts_rank_cd), optionally dense (all-MiniLM-L6-v2) and hybrid (the default convex
fusion and RRF k=60).

    uv run python benchmarks/retrieval_lexical.py                 # lexical only, all train queries
    uv run python benchmarks/retrieval_lexical.py --dense         # + dense and hybrid (vectors cached in .cache/)
    uv run python benchmarks/retrieval_lexical.py --database-url postgresql://...  # instead of a throwaway server

Postgres numbers go through the service's own code: `PostgresChunkIndex` writes, `hybrid_search` over
`PostgresSearchIndex` reads. Reports nDCG@10, recall@100, MRR@10 and per-query latency, and nDCG@10 on the two
halves of the queries that retrieval_fusion.py tunes on and holds out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from ragstream_common.db import create_pool
from ragstream_common.migrate import apply_migrations
from ragstream_retrieve.adapters.pg_index import PostgresChunkIndex
from ragstream_retrieve.adapters.pg_search import PostgresSearchIndex
from ragstream_retrieve.lexical import ENGLISH_STOPWORDS, Bm25Parameters, LexicalAnalyzer, bm25_term_weight
from ragstream_retrieve.models import ChunkToIndex, DocumentVersion, RetrievalMode, SearchRequest, SearchTuning
from ragstream_retrieve.search import hybrid_search

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
CACHE = ROOT / ".cache"
TENANT = "bench"
DEPTH = 100
Ranking = dict[str, list[str]]  # query id -> document ids, best first


@dataclass(frozen=True)
class Dataset:
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_dataset(path: Path, limit: int | None) -> Dataset:
    corpus = {}
    for line in (path / "corpus.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        corpus[str(row["_id"])] = (row.get("title", ""), row["text"])
    qrels: dict[str, dict[str, int]] = {}
    for line in list((path / "qrels" / "train.tsv").open(encoding="utf-8"))[1:]:
        query_id, doc_id, score = line.split()
        qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {}
    for line in (path / "queries.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        if str(row["_id"]) in qrels:
            queries[str(row["_id"])] = row["text"]
    chosen = dict(sorted(queries.items(), key=lambda kv: int(kv[0]))[:limit])
    return Dataset(corpus, chosen, {q: qrels[q] for q in chosen})


def query_split(query_id: str) -> str:
    """Deterministic half of the queries for tuning ("tune") or checking ("heldout"): sha256(id)'s first byte."""
    return "tune" if hashlib.sha256(query_id.encode()).digest()[0] % 2 == 0 else "heldout"


def evaluate(run: Ranking, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    ndcg, recall, mrr = [], [], []
    for query_id, relevant in qrels.items():
        ranked = run.get(query_id, [])
        dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
        ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(relevant.values(), reverse=True)[:10]))
        ndcg.append(dcg / ideal if ideal else 0.0)
        recall.append(len(set(ranked[:100]) & set(relevant)) / len(relevant))
        mrr.append(next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if d in relevant), 0.0))
    return {"ndcg@10": statistics.fmean(ndcg), "recall@100": statistics.fmean(recall), "mrr@10": statistics.fmean(mrr)}


def bm25s_run(data: Dataset, k1: float, b: float) -> Ranking:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(data.corpus)
    texts = [f"{title} {text}" for title, text in data.corpus.values()]
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(data.queries.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    results, _ = retriever.retrieve(query_tokens, k=DEPTH, show_progress=False, n_threads=1)
    return {q: [ids[i] for i in row] for q, row in zip(data.queries, results, strict=True)}


def embed_corpus_and_queries(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """all-MiniLM-L6-v2 vectors (title + text, as BEIR does), cached by dataset size."""
    CACHE.mkdir(exist_ok=True)
    corpus_file = CACHE / f"scifact-minilm-corpus-{len(data.corpus)}.npy"
    query_file = CACHE / f"scifact-minilm-queries-{len(data.queries)}-{min(data.queries, key=int)}.npy"
    if corpus_file.exists() and query_file.exists():
        return np.load(corpus_file), np.load(query_file)
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    encoder = Encoder.load(EncoderOptions(backend="torch", batch_size=64))
    try:
        corpus = encoder.encode_sync([f"{t} {x}" for t, x in data.corpus.values()])
        queries = encoder.encode_sync(list(data.queries.values()))
    finally:
        encoder.close()
    np.save(corpus_file, corpus)
    np.save(query_file, queries)
    return corpus, queries


def random_unit_vectors(count: int) -> np.ndarray:
    vectors = np.random.default_rng(7).standard_normal((count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from ragstream_devstack.postgres import LocalPostgres

    with LocalPostgres() as server:
        yield server.database_url


def abstract_document(
    doc_id: str, title: str, text: str, vector: np.ndarray, terms: dict[str, int], model: tuple[str, str]
) -> DocumentVersion:
    """A SciFact abstract as one document version of one chunk, for the index's own writer."""
    chunk = ChunkToIndex(
        chunk_id=f"{doc_id}#0",
        position=0,
        text=text,
        heading="",
        content_sha256=doc_id,
        token_count=0,
        embedding=vector,
        term_frequencies=terms,
    )
    return DocumentVersion(TENANT, doc_id, 1, title, {}, model[0], model[1], [chunk])


async def index_corpus(url: str, data: Dataset, vectors: np.ndarray, analyzer: LexicalAnalyzer) -> float:
    pool = create_pool(url, max_size=2)
    await pool.open(wait=True)
    writer = PostgresChunkIndex(pool)
    started = time.perf_counter()
    try:
        for (doc_id, (title, text)), vector in zip(data.corpus.items(), vectors, strict=True):
            terms = analyzer.term_frequencies(f"{title}\n{text}")
            await writer.upsert_document(abstract_document(doc_id, title, text, vector, terms, ("bench", "")))
    finally:
        await pool.close()
    return time.perf_counter() - started


async def service_run(
    url: str, data: Dataset, mode: RetrievalMode, tuning: SearchTuning, query_vectors: np.ndarray | None
) -> tuple[Ranking, list[float]]:
    pool = create_pool(url, max_size=4)
    await pool.open(wait=True)
    index = PostgresSearchIndex(pool)
    analyzer = LexicalAnalyzer()
    run: Ranking = {}
    latencies = []
    try:
        for i, (query_id, text) in enumerate(data.queries.items()):
            vector = query_vectors[i] if query_vectors is not None else None
            request = SearchRequest(TENANT, text, DEPTH, mode, vector=vector)
            started = time.perf_counter()
            hits = await hybrid_search(index, analyzer, request, tuning)
            latencies.append((time.perf_counter() - started) * 1000)
            run[query_id] = [hit.chunk.document_id for hit in hits]
    finally:
        await pool.close()
    return run, latencies


def ts_rank_cd_run(url: str, data: Dataset) -> tuple[Ranking, list[float]]:
    """Postgres full-text search: english tsvector, query lexemes OR-ed (AND finds almost nothing for claims)."""
    run: Ranking = {}
    latencies = []
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_fts")
        connection.execute("CREATE TABLE bench_fts (doc_id text PRIMARY KEY, tsv tsvector)")
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO bench_fts VALUES (%s, to_tsvector('english', %s))",
                [(d, f"{t} {x}") for d, (t, x) in data.corpus.items()],
            )
        connection.execute("CREATE INDEX ON bench_fts USING gin (tsv)")
        connection.execute("ANALYZE bench_fts")
        for query_id, text in data.queries.items():
            started = time.perf_counter()
            rows = connection.execute(
                "WITH q AS (SELECT nullif(replace(plainto_tsquery('english', %s)::text, '&', '|'), '')::tsquery AS q)"
                " SELECT doc_id FROM bench_fts, q WHERE tsv @@ q.q ORDER BY ts_rank_cd(tsv, q.q) DESC LIMIT %s",
                (text, DEPTH),
            ).fetchall()
            latencies.append((time.perf_counter() - started) * 1000)
            run[query_id] = [r[0] for r in rows]
    return run, latencies


def sparse_bm25_vectors(
    data: Dataset, analyzer: LexicalAnalyzer, bm25: Bm25Parameters
) -> tuple[dict[str, int], list[tuple[str, Any]]]:
    """Term ids, and each abstract's BM25 term weights as a sparsevec (statistics frozen at build time)."""
    from pgvector import SparseVector

    frequencies = {d: analyzer.term_frequencies(f"{t}\n{x}") for d, (t, x) in data.corpus.items()}
    vocabulary = {term: i for i, term in enumerate(sorted({t for f in frequencies.values() for t in f}))}
    df = Counter(t for f in frequencies.values() for t in f)
    n, avgdl = len(frequencies), sum(sum(f.values()) for f in frequencies.values()) / len(frequencies)
    rows = []
    for doc_id, tf in frequencies.items():
        length = sum(tf.values())
        weights = {vocabulary[t]: bm25_term_weight(c, df[t], n, length, avgdl, bm25) for t, c in tf.items()}
        rows.append((doc_id, SparseVector(weights, len(vocabulary))))
    return vocabulary, rows


def sparsevec_run(
    url: str, data: Dataset, analyzer: LexicalAnalyzer, bm25: Bm25Parameters, hnsw: bool
) -> tuple[Ranking, list[float]]:
    """The alternative design: pgvector sparsevec of BM25 weights, inner product with query-term counts."""
    from pgvector import SparseVector
    from pgvector.psycopg import register_vector

    vocabulary, rows = sparse_bm25_vectors(data, analyzer, bm25)
    run: Ranking = {}
    latencies = []
    with psycopg.connect(url, autocommit=True) as connection:
        register_vector(connection)
        connection.execute("DROP TABLE IF EXISTS bench_sparse")
        connection.execute(f"CREATE TABLE bench_sparse (doc_id text PRIMARY KEY, w sparsevec({len(vocabulary)}))")
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO bench_sparse VALUES (%s, %s)", rows)
        if hnsw:
            connection.execute("CREATE INDEX ON bench_sparse USING hnsw (w sparsevec_ip_ops)")
            connection.execute("SET hnsw.ef_search = 100")
        connection.execute("ANALYZE bench_sparse")
        for query_id, text in data.queries.items():
            counts = Counter(t for t in analyzer.terms(text) if t in vocabulary)
            query = SparseVector({vocabulary[t]: float(c) for t, c in counts.items()}, len(vocabulary))
            started = time.perf_counter()
            sql = "SELECT doc_id FROM bench_sparse ORDER BY w <#> %s LIMIT %s"
            found = connection.execute(sql, (query, DEPTH)).fetchall() if counts else []
            latencies.append((time.perf_counter() - started) * 1000)
            run[query_id] = [r[0] for r in found]
    return run, latencies


def report(name: str, run: Ranking, data: Dataset, latencies: list[float] | None, table: list[dict]) -> None:
    row: dict = {"system": name, **evaluate(run, data.qrels)}
    for half in ("tune", "heldout"):
        judged = {q: r for q, r in data.qrels.items() if query_split(q) == half}
        row[f"{half}_ndcg@10"] = evaluate(run, judged)["ndcg@10"] if judged else 0.0
    if latencies:
        ordered = sorted(latencies)
        row["p50_ms"] = ordered[len(ordered) // 2]
        row["p95_ms"] = ordered[int(len(ordered) * 0.95)]
    table.append(row)
    extra = f"  p50 {row['p50_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms" if latencies else ""
    print(
        f"{name:<34} nDCG@10 {row['ndcg@10']:.4f} (tune {row['tune_ndcg@10']:.4f}, held-out "
        f"{row['heldout_ndcg@10']:.4f})  R@100 {row['recall@100']:.4f}  MRR@10 {row['mrr@10']:.4f}{extra}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--queries", type=int, default=None, help="first N train queries (default: all)")
    parser.add_argument("--dense", action="store_true", help="also dense and hybrid (needs the model)")
    parser.add_argument("--sparsevec", action="store_true", help="also the sparsevec design (exact and HNSW)")
    parser.add_argument("--database-url", default=None, help="default: a throwaway local Postgres")
    parser.add_argument("--k1", type=float, default=1.2)
    parser.add_argument("--b", type=float, default=0.75)
    parser.add_argument("--output", type=Path, default=None, help="write the table as JSON")
    args = parser.parse_args()

    data = load_dataset(args.dataset, args.queries)
    print(f"SciFact: {len(data.corpus)} documents, {len(data.queries)} queries with qrels", flush=True)
    table: list[dict] = []
    started = time.perf_counter()
    report(f"bm25s (k1={args.k1}, b={args.b})", bm25s_run(data, args.k1, args.b), data, None, table)
    print(f"  bm25s index+search {time.perf_counter() - started:.1f} s", flush=True)

    corpus_vectors, query_vectors = (
        embed_corpus_and_queries(data) if args.dense else (random_unit_vectors(len(data.corpus)), None)
    )
    tuning = SearchTuning(bm25=Bm25Parameters(args.k1, args.b))
    analyzer = LexicalAnalyzer(stopwords=ENGLISH_STOPWORDS)
    with database(args.database_url) as url:
        apply_migrations(url)
        seconds = asyncio.run(index_corpus(url, data, corpus_vectors, analyzer))
        print(f"  indexed {len(data.corpus)} documents through PostgresChunkIndex in {seconds:.1f} s", flush=True)
        run, latencies = asyncio.run(service_run(url, data, RetrievalMode.LEXICAL, tuning, None))
        report("postgres BM25 (retrieve service)", run, data, latencies, table)
        run, latencies = ts_rank_cd_run(url, data)
        report("postgres ts_rank_cd (OR query)", run, data, latencies, table)
        if args.sparsevec:
            for hnsw in (False, True):
                run, latencies = sparsevec_run(url, data, analyzer, tuning.bm25, hnsw)
                report(f"sparsevec BM25 weights ({'hnsw' if hnsw else 'exact'})", run, data, latencies, table)
        if args.dense:
            rrf = dataclasses.replace(tuning, fusion="rrf", rrf_k=60.0, dense_weight=1.0, lexical_weight=1.0)
            for name, mode, search_tuning in (
                ("dense", RetrievalMode.DENSE, tuning),
                ("hybrid RRF k=60", RetrievalMode.HYBRID, rrf),
                (f"hybrid {tuning.fusion} (default)", RetrievalMode.HYBRID, tuning),
            ):
                run, latencies = asyncio.run(service_run(url, data, mode, search_tuning, query_vectors))
                report(f"postgres {name}", run, data, latencies, table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
