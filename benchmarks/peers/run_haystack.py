"""Haystack in process: an indexing pipeline into PgvectorDocumentStore, then each query through a query pipeline.

    ~/.cache/ragstream/peers-venv/bin/python benchmarks/peers/run_haystack.py --corpus C --queries Q --dsn D --out O

Defaults kept: DocumentSplitter (split_by "word", split_length 200, overlap 0) -> SentenceTransformersDocument-
Embedder (batch_size 32, content only: no meta_fields_to_embed) -> DocumentWriter; PgvectorDocumentStore (cosine
similarity, exact nearest neighbour: no HNSW index unless asked); queries through SentenceTransformersTextEmbedder
-> PgvectorEmbeddingRetriever with top_k = --top-k. Only the model (all-MiniLM-L6-v2 from the wheel, 384
dimensions) and the database are chosen here. Prints one JSON line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from common import emit_run, go_offline, ingest_figures, load_jsonl, log, model_path, parse_args, time_queries

DIMENSIONS = 384
DISTRIBUTIONS = ("haystack-ai", "pgvector-haystack", "sentence-transformers-haystack", "sentence-transformers", "torch")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    go_offline()
    os.environ["PG_CONN_STR"] = args.dsn  # the store's default way to its database
    from haystack import Document, Pipeline
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.writers import DocumentWriter
    from haystack_integrations.components.embedders.sentence_transformers import (
        SentenceTransformersDocumentEmbedder,
        SentenceTransformersTextEmbedder,
    )
    from haystack_integrations.components.retrievers.pgvector import PgvectorEmbeddingRetriever
    from haystack_integrations.document_stores.pgvector import PgvectorDocumentStore

    corpus, queries = load_jsonl(args.corpus), load_jsonl(args.queries)
    store = PgvectorDocumentStore(embedding_dimension=DIMENSIONS, recreate_table=True)
    indexing = Pipeline()
    indexing.add_component("splitter", DocumentSplitter())
    indexing.add_component("embedder", SentenceTransformersDocumentEmbedder(model=model_path(), progress_bar=False))
    indexing.add_component("writer", DocumentWriter(document_store=store))
    indexing.connect("splitter", "embedder")
    indexing.connect("embedder", "writer")
    started = time.perf_counter()
    indexing.warm_up()  # loads the model; excluded from the ingest time, as for the other systems
    model_load_s = time.perf_counter() - started
    documents = [Document(content=d["text"], meta={"title": d["title"], "corpus_id": str(d["_id"])}) for d in corpus]
    log(f"haystack: indexing {len(documents)} documents ...")
    started = time.perf_counter()
    indexing.run({"splitter": {"documents": documents}})
    elapsed_s = time.perf_counter() - started
    chunks = store.count_documents()
    log(f"haystack: {chunks} chunks in {elapsed_s:.1f}s; {len(queries)} queries ...")

    querying = Pipeline()
    querying.add_component("embedder", SentenceTransformersTextEmbedder(model=model_path(), progress_bar=False))
    querying.add_component("retriever", PgvectorEmbeddingRetriever(document_store=store, top_k=args.top_k))
    querying.connect("embedder.embedding", "retriever.query_embedding")
    querying.warm_up()

    def search(text: str) -> list[str]:
        found = querying.run({"embedder": {"text": text}})["retriever"]["documents"]
        return [str(document.meta["corpus_id"]) for document in found]

    timed = time_queries(search, queries, args.warmup)
    setup = {
        "retrieval": "dense (PgvectorEmbeddingRetriever, exact cosine)",
        "chunking": "DocumentSplitter split_by word, split_length 200, split_overlap 0 (Haystack default)",
    }
    ingest = ingest_figures(len(documents), chunks, elapsed_s, model_load_s)
    emit_run(args, "haystack", DISTRIBUTIONS, setup, ingest, timed)


if __name__ == "__main__":
    main()
