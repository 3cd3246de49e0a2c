"""Static word-embedding inference (WordLlama): each token's row of the embedding matrix, averaged over the text
and L2-normalised. numpy and the Rust `tokenizers` only; the files come from the model's wheel, never a hub."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
TENSOR = "embedding.weight"
# Token ids past this many are dropped: a static model gains nothing from a chunk's tail, and the cost stays bounded.
MAX_TOKENS = 2048


class StaticRunner:
    """The `Runner` of a static model: no threads of its own (a matrix gather and a mean per text)."""

    def __init__(self, package_dir: Path, threads: int = 1) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        # The library's own loader looks for `tokenizer/` (the wheel ships `tokenizers/`) and falls back to a
        # download; reading the two files directly cannot reach the network.
        self._matrix = np.ascontiguousarray(load_file(str(package_dir / WEIGHTS))[TENSOR], dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(package_dir / TOKENIZER))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.threads = threads
        self.dimensions = int(self._matrix.shape[1])

    def __call__(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        del batch_size  # no forward pass to batch
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        vectors = np.empty((len(encodings), self.dimensions), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids = np.clip(np.asarray(encoding.ids[:MAX_TOKENS], dtype=np.int64), 0, self._matrix.shape[0] - 1)
            vectors[row] = self._matrix[ids].mean(axis=0) if ids.size else 0.0
        norms = np.linalg.norm(vectors, axis=1)
        # A text with no tokens gets a fixed unit vector: the index refuses zero vectors.
        vectors[norms == 0] = 1.0
        normalised: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return normalised
