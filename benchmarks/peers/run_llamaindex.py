"""LlamaIndex in process: index the corpus into PGVectorStore, then time each query through its default retriever.

    ~/.cache/ragstream/peers-venv/bin/python benchmarks/peers/run_llamaindex.py --corpus C --queries Q --dsn D --out O

Defaults kept: VectorStoreIndex.from_documents with Settings' transformations (SentenceSplitter, chunk_size 1024
tokens, overlap 200), HuggingFaceEmbedding (embed_batch_size 10, normalised; metadata in the embedded text,
LlamaIndex's MetadataMode.EMBED default, so the title is embedded with the text), PGVectorStore (dense,
exact search: no HNSW index unless asked), index.as_retriever() with similarity_top_k = --top-k. Only the model
(all-MiniLM-L6-v2 from the wheel, 384 dimensions) and the database are chosen here. Prints one JSON line.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from common import (
    emit_run,
    go_offline,
    ingest_figures,
    load_jsonl,
    log,
    model_path,
    parse_args,
    time_queries,
    with_driver,
)

TABLE = "scifact"
DIMENSIONS = 384
DISTRIBUTIONS = (
    "llama-index-core",
    "llama-index-vector-stores-postgres",
    "llama-index-embeddings-huggingface",
    "sentence-transformers",
    "torch",
)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(__doc__ or "", argv)
    go_offline()
    import psycopg
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.postgres import PGVectorStore

    corpus, queries = load_jsonl(args.corpus), load_jsonl(args.queries)
    started = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=model_path())
    embed_model.get_text_embedding("warm-up")
    model_load_s = time.perf_counter() - started
    store = PGVectorStore.from_params(
        connection_string=with_driver(args.dsn, "psycopg2"),
        async_connection_string=with_driver(args.dsn, "asyncpg"),
        table_name=TABLE,
        embed_dim=DIMENSIONS,
    )
    # The document id is the corpus id: every node keeps it as ref_doc_id, so no extra metadata gets embedded.
    documents = [Document(id_=str(d["_id"]), text=d["text"], metadata={"title": d["title"]}) for d in corpus]
    log(f"llamaindex: indexing {len(documents)} documents ...")
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    elapsed_s = time.perf_counter() - started
    with psycopg.connect(args.dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM public.data_{TABLE}").fetchone()
    chunks = int(row[0]) if row else 0
    log(f"llamaindex: {chunks} chunks in {elapsed_s:.1f}s; {len(queries)} queries ...")
    retriever = index.as_retriever(similarity_top_k=args.top_k)

    def search(text: str) -> list[str]:
        return [str(hit.node.ref_doc_id) for hit in retriever.retrieve(text)]

    timed = time_queries(search, queries, args.warmup)
    setup = {
        "retrieval": "dense (VectorStoreIndex retriever, PGVectorStore exact cosine)",
        "chunking": "SentenceSplitter chunk_size 1024, chunk_overlap 200 (LlamaIndex default)",
    }
    ingest = ingest_figures(len(documents), chunks, elapsed_s, model_load_s)
    emit_run(args, "llamaindex", DISTRIBUTIONS, setup, ingest, timed)


if __name__ == "__main__":
    main()
