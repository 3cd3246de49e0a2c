"""The embed service's encoder: a model backend on two threads of its own, one for documents, one for queries."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np
from ragstream_common.logs import get_logger
from ragstream_common.stage_metrics import timed_stage

from ragstream_embed.artifacts import ONNX_BACKENDS, artifact_dir, default_cache_dir, read_manifest
from ragstream_embed.models import EncoderOptions, ModelSpec, model_spec

BACKENDS = ("torch", *ONNX_BACKENDS)
log = get_logger(__name__)


class Runner(Protocol):
    threads: int
    dimensions: int

    def __call__(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...


class Encoder:
    """Runs the model off the event loop; documents and queries use separate threads (and may use separate
    backends), so a bulk batch never queues in front of a query: torch and ONNX Runtime release the GIL while
    they compute.

    Each path has its own intra-op thread count. Document batches use every core; a query one core by default: a
    short query gains nothing from a second core on this model, and on a small machine that core is the one
    Kafka, Postgres and the other services need at that moment (see benchmarks/README.md)."""

    def __init__(self, spec: ModelSpec, version: str, documents: Runner, queries: Runner, batch_size: int) -> None:
        self.model_name = spec.name
        self.model_version = version
        self.dimensions = documents.dimensions
        self._batch_size = batch_size
        self._runners = {"documents": documents, "queries": queries}
        self._documents = _model_thread("encode-docs", documents)
        self._queries = _model_thread("encode-queries", queries)

    @classmethod
    def load(cls, options: EncoderOptions) -> Encoder:
        spec = model_spec(options.model)
        # One torch model serves both paths (its thread count is per calling thread); ONNX sessions fix theirs, so
        # each path has its own.
        torch_models: dict[str, object] = {}
        documents, version = _load_runner(spec, options.backend, options.document_threads, options, torch_models)
        query_backend = options.query_backend or options.backend
        queries, _ = _load_runner(spec, query_backend, options.query_threads, options, torch_models)
        return cls(spec, version, documents, queries, options.batch_size)

    def encode_sync(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Documents' backend, on the calling thread (benchmarks and tools)."""
        return self._runners["documents"](list(texts), batch_size or self._batch_size)

    async def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One batch of chunk texts (stage embed_batch: queueing for the documents thread included)."""
        with timed_stage("embed_batch"):
            return await self._on(self._documents, "documents", texts)

    async def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One batch of questions (stage query_embed)."""
        with timed_stage("query_embed"):
            return await self._on(self._queries, "queries", texts)

    async def _on(self, thread: ThreadPoolExecutor, path: str, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(thread, self._runners[path], list(texts), self._batch_size)

    def thread_counts(self) -> dict[str, int]:
        """Intra-op threads each path computes with (0: one per core)."""
        return {path: runner.threads for path, runner in self._runners.items()}

    def close(self) -> None:
        self._documents.shutdown(wait=True)
        self._queries.shutdown(wait=True)


def _model_thread(name: str, runner: Runner) -> ThreadPoolExecutor:
    # torch's thread count belongs to the calling thread: set it on the thread that will run the model.
    initializer = getattr(runner, "use_threads", None)
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=initializer)


def _load_runner(
    spec: ModelSpec, backend: str, threads: int, options: EncoderOptions, torch_models: dict[str, object]
) -> tuple[Runner, str]:
    """A runner of `backend` and the version of the weights it computes with (a static model has one runner,
    whatever the backend)."""
    if spec.kind == "static":
        from ragstream_embed.adapters.static_runner import StaticRunner

        return StaticRunner(spec.weights_dir(), threads), spec.version
    if backend == "torch":
        from ragstream_embed.adapters.torch_runner import TorchRunner, load_sentence_transformer

        if spec.key not in torch_models:
            torch_models[spec.key] = load_sentence_transformer(spec.weights_dir(), options.device)
        return TorchRunner(torch_models[spec.key], threads), spec.version
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}; one of {', '.join(BACKENDS)}")
    from ragstream_embed.adapters.onnx_runner import OnnxRunner

    directory = artifact_dir(options.model_dir or default_cache_dir(), spec, backend)
    manifest = read_manifest(directory) or _export_missing(spec, backend, directory, options)
    return OnnxRunner(directory, threads), str(manifest["version"])


def _export_missing(spec: ModelSpec, backend: str, directory: Path, options: EncoderOptions) -> dict[str, object]:
    """A development checkout exports on first use (`make setup` normally has); an image must ship the export."""
    if not all(importlib.util.find_spec(name) for name in ("torch", "onnx", "sentence_transformers")):
        raise RuntimeError(
            f"no {backend} export of {spec.key} in {directory}; build it with `python -m ragstream_embed.onnx_export`"
            " (needs the export extra: torch, onnx)"
        )
    from ragstream_embed.onnx_export import export

    log.warning("exporting the ONNX backends on first use", model=spec.key, directory=str(directory))
    return export(spec, options.model_dir or default_cache_dir())[backend]
