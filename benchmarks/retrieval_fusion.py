"""Fusion study on SciFact train, in memory: which way of fusing dense (all-MiniLM-L6-v2) and BM25 candidates
ranks best, tuned on one half of the queries and checked on the other; optionally with the ingest chunker.

    uv run python benchmarks/retrieval_fusion.py                        # whole abstracts (cached vectors)
    uv run python benchmarks/retrieval_fusion.py --chunking 200/40      # ingest chunks (max/overlap tokens)

The 809 train queries are split by a hash of their id into a tuning half and a held-out half. Every fusion
setting of the grid is scored on the tuning half; the best of each family, RRF k=60 and the service's default
fusion are reported on both halves and on all queries, plus the default at each candidate depth.
Dense = exact cosine over the same MiniLM vectors the service stores; BM25 = bm25s with the service's stemmer and
stop words (identical rankings to the service's Postgres BM25, see retrieval_lexical.py). Fusion runs the service's
own functions (`ragstream_retrieve.fusion`). Chunk results count as their document at the rank of
its first chunk. Chunk vectors are cached in .cache/ (encoding ~10k chunks takes ~13 min on one core).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ragstream_retrieve.fusion import FusedCandidate, convex_combination_fusion, reciprocal_rank_fusion
from ragstream_retrieve.models import Candidate, SearchTuning
from retrieval_lexical import (
    CACHE,
    DEFAULT_DATASET,
    Dataset,
    Ranking,
    embed_corpus_and_queries,
    evaluate,
    load_dataset,
    query_split,
)

DEPTHS = (50, 100, 200)
RRF_KS = (10, 20, 40, 60)
RRF_LEXICAL_WEIGHTS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)  # dense weight 1
ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))  # dense share of the convex combination
NORMALIZATIONS = ("minmax", "zscore")
Fuse = Callable[[Sequence[Candidate], Sequence[Candidate]], list[FusedCandidate]]


@dataclass(frozen=True)
class Units:
    """What gets retrieved: whole abstracts or ingest chunks, each belonging to one document."""

    doc_ids: list[str]
    lexical_texts: list[str]
    vectors: np.ndarray

    @functools.cached_property
    def first_unit(self) -> dict[str, int]:
        first: dict[str, int] = {}
        for unit, doc_id in enumerate(self.doc_ids):
            first.setdefault(doc_id, unit)
        return first


@dataclass(frozen=True)
class Setting:
    family: str
    depth: int
    params: dict[str, float | str]

    def fuse(self) -> Fuse:
        if self.family == "rrf":
            k, weight = float(self.params["k"]), float(self.params["lexical_weight"])
            return lambda d, lx: reciprocal_rank_fusion(d, lx, k=k, lexical_weight=weight)
        alpha, normalization = float(self.params["alpha"]), str(self.params["normalization"])
        return lambda d, lx: convex_combination_fusion(
            d,
            lx,
            dense_weight=alpha,
            lexical_weight=1 - alpha,
            normalization=normalization,  # type: ignore[arg-type]
        )

    def label(self) -> str:
        return f"{self.family} depth={self.depth} " + " ".join(f"{k}={v}" for k, v in self.params.items())


def service_default() -> Setting:
    """The service's default hybrid fusion (SearchTuning's defaults), as a setting of this study."""
    tuning = SearchTuning()
    if tuning.fusion == "rrf":
        return Setting(
            "rrf",
            tuning.candidate_depth,
            {"k": tuning.rrf_k, "lexical_weight": tuning.lexical_weight / tuning.dense_weight},
        )
    alpha = tuning.dense_weight / (tuning.dense_weight + tuning.lexical_weight)
    return Setting("convex", tuning.candidate_depth, {"alpha": alpha, "normalization": tuning.score_normalization})


SERVICE_DEFAULT = service_default()


def abstract_units(data: Dataset) -> tuple[Units, np.ndarray]:
    corpus_vectors, query_vectors = embed_corpus_and_queries(data)
    texts = [f"{title}\n{text}" for title, text in data.corpus.values()]
    return Units(list(data.corpus), texts, corpus_vectors), query_vectors


def chunk_units(data: Dataset, max_tokens: int, overlap: int) -> Units:
    """The ingest path: extract (normalise) the abstract, chunk it, embed chunk text only; lexical text adds
    the title, as the retrieve indexer does."""
    from ragstream_ingest.chunker import Chunker
    from ragstream_ingest.extract import extract_document

    chunker = Chunker(max_tokens=max_tokens, overlap_tokens=overlap)
    doc_ids, chunk_texts, lexical_texts = [], [], []
    for doc_id, (title, text) in data.corpus.items():
        for piece in chunker.split(extract_document(text.encode(), "text/plain").text):
            doc_ids.append(doc_id)
            chunk_texts.append(piece.text)
            lexical_texts.append(f"{title}\n{piece.text}")
    cache = CACHE / f"scifact-minilm-chunks-{max_tokens}-{overlap}-{len(chunk_texts)}.npy"
    if cache.exists():
        return Units(doc_ids, lexical_texts, np.load(cache))
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.models import EncoderOptions

    print(f"  encoding {len(chunk_texts)} chunks ({max_tokens}/{overlap})", flush=True)
    encoder = Encoder.load(EncoderOptions(backend="torch", batch_size=32, document_threads=1))
    try:
        vectors = encoder.encode_sync(chunk_texts)
    finally:
        encoder.close()
    CACHE.mkdir(exist_ok=True)
    np.save(cache, vectors)
    return Units(doc_ids, lexical_texts, vectors)


def dense_candidates(units: Units, query_vectors: np.ndarray, depth: int) -> list[list[Candidate]]:
    results = []
    for similarities in query_vectors @ units.vectors.T:
        top = np.argpartition(-similarities, depth)[:depth]
        top = top[np.argsort(-similarities[top], kind="stable")]
        results.append([Candidate(int(i), float(similarities[i])) for i in top])
    return results


def lexical_candidates(units: Units, queries: Sequence[str], depth: int) -> list[list[Candidate]]:
    """BM25 (k1 1.2, b 0.75) with the service's stemmer and stop words; only units matching a query term."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(
        bm25s.tokenize(units.lexical_texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    tokens = bm25s.tokenize(list(queries), stopwords="en", stemmer=stemmer, show_progress=False)
    keys, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    return [
        [Candidate(int(k), float(s)) for k, s in zip(row_keys, row_scores, strict=True) if s > 0]
        for row_keys, row_scores in zip(keys, scores, strict=True)
    ]


def by_document(candidates: Sequence[Candidate], units: Units) -> list[Candidate]:
    """A retriever's chunk list as a document list (document-level fusion): each document once, with its best
    chunk's score, keyed by the document's first unit so both retrievers name a document alike."""
    seen: dict[str, Candidate] = {}
    for c in candidates:
        doc_id = units.doc_ids[c.key]
        seen.setdefault(doc_id, Candidate(units.first_unit[doc_id], c.score))
    return list(seen.values())


def documents(keys: Sequence[int], units: Units) -> list[str]:
    return list(dict.fromkeys(units.doc_ids[k] for k in keys))


@dataclass(frozen=True)
class Study:
    data: Dataset
    units: Units
    dense: list[list[Candidate]]  # per query (data.queries order), at the deepest depth
    lexical: list[list[Candidate]]

    def run(self, fuse: Fuse | None, depth: int, document_level: bool = False) -> Ranking:
        run: Ranking = {}
        for query_id, dense, lexical in zip(self.data.queries, self.dense, self.lexical, strict=True):
            dense, lexical = dense[:depth], lexical[:depth]
            if document_level:
                dense, lexical = by_document(dense, self.units), by_document(lexical, self.units)
            keys = [c.key for c in fuse(dense, lexical)] if fuse else [c.key for c in dense or lexical]
            run[query_id] = documents(keys, self.units)
        return run

    def scores(self, run: Ranking) -> dict[str, dict[str, float]]:
        halves = {"tune": {}, "heldout": {}, "all": self.data.qrels}
        for query_id, judged in self.data.qrels.items():
            halves[query_split(query_id)][query_id] = judged
        return {name: evaluate(run, qrels) for name, qrels in halves.items()}


def grid() -> list[Setting]:
    rrf = [
        Setting("rrf", d, {"k": k, "lexical_weight": w})
        for d, k, w in itertools.product(DEPTHS, RRF_KS, RRF_LEXICAL_WEIGHTS)
    ]
    convex = [
        Setting("convex", d, {"alpha": a, "normalization": n})
        for d, n, a in itertools.product(DEPTHS, NORMALIZATIONS, ALPHAS)
    ]
    return rrf + convex


def show(name: str, scores: dict[str, dict[str, float]]) -> dict:
    cells = "  ".join(f"{h} {m['ndcg@10']:.4f}/{m['recall@100']:.4f}/{m['mrr@10']:.4f}" for h, m in scores.items())
    print(f"{name:<58} {cells}", flush=True)
    return {"system": name, **scores}


def study(data: Dataset, units: Units, query_vectors: np.ndarray, document_level: bool) -> list[dict]:
    deepest = max(DEPTHS)
    s = Study(
        data,
        units,
        dense_candidates(units, query_vectors, deepest),
        lexical_candidates(units, list(data.queries.values()), deepest),
    )
    halves = [query_split(q) for q in data.queries]
    print(
        f"{len(units.doc_ids)} units; queries tune {halves.count('tune')}, held-out {halves.count('heldout')};"
        " cells: nDCG@10/R@100/MRR@10",
        flush=True,
    )
    rows = [show("dense", s.scores(s.run(None, 100))), show("BM25", s.scores(_lexical_only(s)))]
    chosen = [Setting("rrf", 100, {"k": 60, "lexical_weight": 1.0}), SERVICE_DEFAULT]
    tuned: dict[str, list[tuple[float, Setting]]] = {}
    for setting in grid():
        ndcg = s.scores(s.run(setting.fuse(), setting.depth))["tune"]["ndcg@10"]
        tuned.setdefault(f"{setting.family} {setting.params.get('normalization', '')}", []).append((ndcg, setting))
    for family, results in tuned.items():
        results.sort(key=lambda pair: -pair[0])
        print(f"  best on tune, {family}: " + "; ".join(f"{n:.4f} {st.label()}" for n, st in results[:4]), flush=True)
        chosen.append(results[0][1])
    for setting in chosen:
        rows.append(show(setting.label(), s.scores(s.run(setting.fuse(), setting.depth))))
        if document_level:
            run = s.run(setting.fuse(), setting.depth, document_level=True)
            rows.append(show(f"  document-level {setting.label()}", s.scores(run)))
    for depth in DEPTHS:
        rows.append(show(f"  depth {depth}: {SERVICE_DEFAULT.label()}", s.scores(s.run(SERVICE_DEFAULT.fuse(), depth))))
    return rows


def _lexical_only(s: Study) -> Ranking:
    return {
        q: documents([c.key for c in lexical[:100]], s.units)
        for q, lexical in zip(s.data.queries, s.lexical, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--chunking", default=None, help="MAX/OVERLAP content tokens for the ingest chunker")
    parser.add_argument("--output", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()

    data = load_dataset(args.dataset, None)
    units, query_vectors = abstract_units(data)
    if args.chunking:
        max_tokens, overlap = (int(x) for x in args.chunking.split("/"))
        units = chunk_units(data, max_tokens, overlap)
    rows = study(data, units, query_vectors, document_level=bool(args.chunking))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
