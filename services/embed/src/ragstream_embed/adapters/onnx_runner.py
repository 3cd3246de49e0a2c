"""ONNX Runtime inference over a model exported by `ragstream_embed.onnx_export`: no torch at run time."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxRunner:
    """One ONNX Runtime session with its own intra-op thread count, and the model's own tokenizer (the Rust
    `tokenizers` library, from the same tokenizer.json sentence-transformers uses).

    Texts are encoded in order of length, so each batch pads to its own longest text rather than the call's;
    the rows go back in the caller's order."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(int(config["max_seq_length"]))
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        # 0 lets ONNX Runtime use one thread per core.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep rather than spin: on a machine shared with Kafka, Postgres and the other
        # services, spinning burns the CPU they need (20.9 vs 24.4 chunks per CPU-second under load, 2 threads).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.threads = threads
        self.dimensions = int(self._session.get_outputs()[0].shape[-1])

    def __call__(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(list(texts))
        vectors = np.empty((len(encodings), self.dimensions), dtype=np.float32)
        order = np.argsort([len(encoding.ids) for encoding in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            vectors[rows] = self._run([encodings[row].ids for row in rows])
        return vectors

    def _run(self, token_ids: list[list[int]]) -> np.ndarray:
        longest = max(len(ids) for ids in token_ids)
        input_ids = np.zeros((len(token_ids), longest), dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        feed = dict(zip(INPUTS, (input_ids, attention_mask, np.zeros_like(input_ids)), strict=True))
        (embeddings,) = self._session.run(None, feed)
        return np.asarray(embeddings, dtype=np.float32)
