"""Ingestion throughput of the running pipeline against the raw encode throughput of the same chunks in-process.

    uv run python benchmarks/ingest_throughput.py --corpus ../shared/datasets/scifact/corpus.jsonl
    uv run python benchmarks/ingest_throughput.py --limit 50          # a quick smoke run

1. Pipeline: every document goes through POST /v1/documents (ids `ingest-<run>-<corpus id>`, new every run) with
   bounded concurrency; the clock runs from the first document's `created_at` to the last `indexed_at` in the
   gateway's status bodies. chunks = the sum of their `chunk_count`. With an admin token the documents go to a
   fresh tenant, so the per-tenant embedding cache cannot answer for texts an earlier run already encoded.
2. Raw: the same texts chunked in-process with the ingest service's Chunker and settings, then encoded with the
   embed service's Encoder (EMBED_BACKEND) at its encode batch size (after a warm-up); chunks / encode time.
The report ends with one JSON line: pipeline_chunks_per_s, raw_chunks_per_s, ratio, documents, chunks,
documents_per_s and rss_mb (peak resident memory per service during the pipeline run).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from corpus import Document, load_corpus, upload_documents, wait_until_final
from harness import (
    DEFAULT_DATASET,
    CpuAccount,
    RssSampler,
    SystemUnderTest,
    api_client,
    finish,
    fresh_tenant,
    log,
    run_id,
    system_under_test,
)

WARMUP_TEXTS = 64


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_DATASET / "corpus.jsonl", help="BEIR corpus.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="only the first N documents")
    parser.add_argument("--concurrency", type=int, default=8, help="uploads in flight")
    parser.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait for indexing")
    parser.add_argument("--skip-raw", action="store_true", help="pipeline only (no in-process encode)")
    return parser.parse_args(argv)


async def run_pipeline(
    system: SystemUnderTest,
    documents: Sequence[Document],
    args: argparse.Namespace,
    tenant: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """`tenant` (id, API key): a fresh tenant the caller made; by default one is made here when the system
    gives an admin token."""
    run = run_id()
    tenant = tenant or await fresh_tenant(system, f"bench-ingest-{run}")
    if tenant is None:
        log(
            "no admin token (GATEWAY_ADMIN_TOKEN): uploading as the configured key's tenant; chunks whose text "
            "that tenant embedded before come from the embedding cache, which flatters the pipeline figure"
        )
    else:
        log(f"fresh tenant {tenant[0]}")
    prefix = f"ingest-{run}"
    with RssSampler() as rss, CpuAccount() as cpu:
        async with api_client(system, tenant[1] if tenant else None) as client:
            upload = await upload_documents(client, documents, prefix, args.concurrency)
            log(f"uploaded {len(upload.accepted)} documents in {upload.elapsed_s:.1f}s: {dict(upload.statuses)}")
            if upload.errors:
                log(f"  refused, e.g. {upload.errors[:3]}")
            views = await wait_until_final(client, upload.accepted, args.timeout)
        finished = time.time()
    indexed = [view for view in views.values() if view["status"] == "indexed"]
    failed = {d: view.get("error") for d, view in views.items() if view["status"] != "indexed"}
    if not indexed:
        raise SystemExit(f"no document was indexed; failures: {list(failed.items())[:3]}")
    started_at = min(datetime.fromisoformat(view["created_at"]) for view in views.values())
    ended_at = max(datetime.fromisoformat(view["indexed_at"]) for view in indexed)
    elapsed_s = (ended_at - started_at).total_seconds()
    chunks = sum(int(view["chunk_count"]) for view in indexed)
    return {
        "tenant": tenant[0] if tenant else system.tenant,
        "fresh_tenant": tenant is not None,
        "documents": len(indexed),
        "failed": len(failed),
        "failure_examples": list(failed.items())[:5],
        "refused": len(upload.errors),
        "chunks": chunks,
        "elapsed_s": elapsed_s,
        "client_elapsed_s": finished - upload.first_sent,
        "upload_s": upload.elapsed_s,
        "documents_per_s": len(indexed) / elapsed_s,
        "chunks_per_s": chunks / elapsed_s,
        "indexed_ids": {d for d, view in views.items() if view["status"] == "indexed"},
        "prefix": prefix,
        "rss_mb": rss.peaks_mb,
        # Where the cores went: CPU seconds per service, per database role's backends, Postgres and Kafka.
        "cpu_s": cpu.seconds,
    }


def document_chunks(documents: Sequence[Document]) -> list[tuple[str, str]]:
    """(corpus id, chunk text) for every chunk the ingest service makes of these documents (JSON uploads are
    text/plain)."""
    from ragstream_ingest.chunker import Chunker
    from ragstream_ingest.config import IngestSettings
    from ragstream_ingest.extract import extract_document

    settings = IngestSettings()
    chunker = Chunker(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    return [
        (document.corpus_id, piece.text)
        for document in documents
        for piece in chunker.split(extract_document(document.text.encode("utf-8"), "text/plain").text)
    ]


def chunk_texts(documents: Sequence[Document]) -> tuple[list[str], float]:
    """The chunk texts of these documents, and how long chunking took."""
    started = time.perf_counter()
    texts = [text for _, text in document_chunks(documents)]
    return texts, time.perf_counter() - started


def raw_encode(texts: Sequence[str]) -> dict[str, Any]:
    from ragstream_embed.adapters.encoder import Encoder
    from ragstream_embed.config import EmbedSettings

    settings = EmbedSettings()
    started = time.perf_counter()
    # The service's own backend and thread settings (EMBED_*), so pipeline and raw run the same engine.
    encoder = Encoder.load(settings.encoder_options())
    load_s = time.perf_counter() - started
    try:
        encoder.encode_sync(list(texts[:WARMUP_TEXTS]), batch_size=settings.encode_batch_size)
        started = time.perf_counter()
        vectors = encoder.encode_sync(list(texts), batch_size=settings.encode_batch_size)
        encode_s = time.perf_counter() - started
    finally:
        encoder.close()
    assert len(vectors) == len(texts)
    return {
        "chunks": len(texts),
        "encode_s": encode_s,
        "chunks_per_s": len(texts) / encode_s,
        "model_load_s": load_s,
        "batch_size": settings.encode_batch_size,
        "device": settings.device,
    }


def print_report(pipeline: dict[str, Any], raw: dict[str, Any] | None, ratio: float | None) -> None:
    print("\nIngestion throughput")
    print(
        f"  pipeline: {pipeline['documents']} documents, {pipeline['chunks']} chunks indexed in "
        f"{pipeline['elapsed_s']:.1f}s (first created_at -> last indexed_at); "
        f"{pipeline['failed']} failed, {pipeline['refused']} refused"
    )
    print(
        f"            {pipeline['documents_per_s']:.2f} documents/s, {pipeline['chunks_per_s']:.2f} chunks/s "
        f"(uploads took {pipeline['upload_s']:.1f}s; client wall time {pipeline['client_elapsed_s']:.1f}s)"
    )
    if raw is not None:
        print(
            f"  raw encode: {raw['chunks']} chunks in {raw['encode_s']:.1f}s = {raw['chunks_per_s']:.2f} chunks/s "
            f"(batch size {raw['batch_size']}, {raw['device']}; chunking {raw['chunking_s']:.1f}s, "
            f"model load {raw['model_load_s']:.1f}s, both excluded)"
        )
        print(f"  ratio pipeline/raw: {ratio:.3f}")
    print(
        "  peak RSS (MB, incl. children): " + ", ".join(f"{name} {mb:.0f}" for name, mb in pipeline["rss_mb"].items())
    )
    busy = sum(pipeline["cpu_s"].values())
    print(
        f"  CPU seconds ({busy:.0f} s in {pipeline['client_elapsed_s']:.0f} s wall): "
        + ", ".join(f"{group} {seconds:.0f}" for group, seconds in pipeline["cpu_s"].items() if seconds >= 0.5)
    )
    if not pipeline["fresh_tenant"]:
        print("  note: no fresh tenant (no admin token); the embedding cache may have served repeated texts")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    documents = load_corpus(args.corpus, args.limit)
    with system_under_test() as system:
        log(f"{system.describe()}; {len(documents)} documents from {args.corpus}")
        pipeline = asyncio.run(run_pipeline(system, documents, args))
    # After a system the harness started is stopped, so the raw figure is taken on a quiet machine.
    raw = None
    if not args.skip_raw:
        indexed = [d for d in documents if f"{pipeline['prefix']}-{d.corpus_id}" in pipeline["indexed_ids"]]
        texts, chunking_s = chunk_texts(indexed)
        if len(texts) != pipeline["chunks"]:
            log(f"note: in-process chunking made {len(texts)} chunks, the pipeline {pipeline['chunks']}")
        log(f"encoding {len(texts)} chunks in-process ...")
        raw = {**raw_encode(texts), "chunking_s": chunking_s}
    ratio = pipeline["chunks_per_s"] / raw["chunks_per_s"] if raw else None
    print_report(pipeline, raw, ratio)
    summary = {
        "pipeline_chunks_per_s": round(pipeline["chunks_per_s"], 2),
        "raw_chunks_per_s": round(raw["chunks_per_s"], 2) if raw else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "documents": pipeline["documents"],
        "chunks": pipeline["chunks"],
        "documents_per_s": round(pipeline["documents_per_s"], 2),
        "rss_mb": pipeline["rss_mb"],
    }
    pipeline.pop("indexed_ids")
    finish(
        "ingest_throughput",
        summary,
        {
            "corpus": str(args.corpus),
            "limit": args.limit,
            "concurrency": args.concurrency,
            "pipeline": pipeline,
            "raw": raw,
        },
    )


if __name__ == "__main__":
    main()
