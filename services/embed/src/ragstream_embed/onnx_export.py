"""Builds the ONNX backends of an embedding model from the weights its package ships, and checks them.

    python -m ragstream_embed.onnx_export [--model all-minilm-l6-v2] [--cache-dir DIR] [--force]

`onnx`: the sentence-transformers model (transformer, pooling, normalisation) exported with torch.onnx, then
ONNX Runtime's transformer optimiser fuses attention, layer norms and GELU. `onnx-int8`: that graph with its
MatMul and Attention weights quantised dynamically to int8, per output channel. Each is checked against torch
on fixed texts (`BOUNDS`) before it is published; `make setup` and the embed image build run this. Needs the
`export` extra (torch, onnx); the service that loads the result needs neither."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragstream_embed.adapters.onnx_runner import INPUTS, OnnxRunner
from ragstream_embed.adapters.torch_runner import TorchRunner, load_sentence_transformer
from ragstream_embed.artifacts import ONNX_BACKENDS, artifact_dir, default_cache_dir, read_manifest
from ragstream_embed.models import ModelSpec, model_spec

# Least cosine to torch's vector on any check text; int8 also on the mean (measured: min 0.989, mean 0.995).
BOUNDS = {"onnx": {"min": 0.999, "mean": 0.9999}, "onnx-int8": {"min": 0.98, "mean": 0.99}}
COPIED = ("tokenizer.json", "sentence_bert_config.json")
CHECK_TEXTS = [
    "What is the capital of France?",
    "reset my password",
    "Quarterly revenue grew 12% year over year, driven by subscriptions in the EMEA region.",
    "The patient was given 5 mg of the drug twice daily for two weeks.",
    "Kafka consumer groups rebalance when a member joins or leaves the group.",
    "def handler(event):\n    return event['body']",
    "Ünïcödé text, émojis 🚀 and CJK 漢字 mixed in one line.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The contract may be terminated by either party with ninety days' written notice.",
    "Does aspirin reduce the risk of a second heart attack?",
    "GDPR Article 17 grants the right to erasure.",
    "a",
    "Mitochondria are the powerhouse of the cell. " * 60,  # longer than the model's window: truncation
    "Interest rates rose; bond prices fell; the curve inverted for the first time since 2019.",
    "How do I rotate an API key without downtime?",
    "Tumour necrosis factor alpha levels were elevated in the treated cohort (p < 0.01).",
]


def weights_digest(weights_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(weights_dir.glob("*.safetensors")):
        with path.open("rb") as weights:
            for block in iter(lambda: weights.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def export(spec: ModelSpec, cache_dir: Path, force: bool = False) -> dict[str, dict[str, object]]:
    """Builds the ONNX backends unless current ones (from these very weights) are cached; returns each
    backend's manifest."""
    weights_dir = spec.weights_dir()
    digest = weights_digest(weights_dir)
    with _exclusive(cache_dir):
        manifests = {backend: read_manifest(artifact_dir(cache_dir, spec, backend)) for backend in ONNX_BACKENDS}
        current = {backend: m for backend, m in manifests.items() if m and m.get("weights_sha256") == digest}
        if len(current) == len(ONNX_BACKENDS) and not force:
            return current
        return _build(spec, cache_dir, weights_dir, digest)


def _build(spec: ModelSpec, cache_dir: Path, weights_dir: Path, digest: str) -> dict[str, dict[str, object]]:
    manifests: dict[str, dict[str, object]] = {}
    # Eager attention exports the plain MatMul/Softmax pattern the optimiser fuses into one Attention op.
    model = load_sentence_transformer(weights_dir, attn_implementation="eager")
    reference = TorchRunner(model, threads=0)(CHECK_TEXTS, 32)
    with tempfile.TemporaryDirectory(dir=_ensure(cache_dir)) as scratch:
        work = Path(scratch)
        fp32 = _export_fp32(model, work)
        graphs = {"onnx": fp32, "onnx-int8": _quantize(fp32, work)}
        for backend, graph in graphs.items():
            manifests[backend] = _publish(spec, backend, graph, weights_dir, digest, reference, cache_dir)
    return manifests


@contextmanager
def _exclusive(cache_dir: Path) -> Iterator[None]:
    """One exporter at a time per cache (services and tests may start together on a fresh checkout)."""
    with (_ensure(cache_dir) / ".export.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _export_fp32(model: object, work: Path) -> Path:
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):  # type: ignore[no-untyped-def]
            features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(features)["sentence_embedding"]  # type: ignore[operator]

    sample = model.tokenizer(["an example", "a second, longer example"], padding=True, return_tensors="pt")  # type: ignore[attr-defined]
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    raw = work / "raw.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow the export resolves
        _trace(torch, SentenceEmbedding().eval(), sample, raw, axes)
    config = model[0].auto_model.config  # type: ignore[index]
    optimized = optimize_model(
        str(raw), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size
    )
    fused = work / "fp32.onnx"
    optimized.save_model_to_file(str(fused))
    return fused


def _trace(torch: Any, module: Any, sample: Any, path: Path, axes: dict[str, dict[int, str]]) -> None:
    torch.onnx.export(
        module,
        tuple(sample[name] for name in INPUTS),
        str(path),
        input_names=list(INPUTS),
        output_names=["sentence_embedding"],
        dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def _quantize(fp32: Path, work: Path) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = work / "int8.onnx"
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=True,
        # The fused contrib ops carry no inferred types; their tensors are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return int8


def _publish(
    spec: ModelSpec,
    backend: str,
    graph: Path,
    weights_dir: Path,
    digest: str,
    reference: np.ndarray,
    cache_dir: Path,
) -> dict[str, object]:
    """Checks the graph against torch, then moves it into place in one rename (readers never see half)."""
    staging = Path(tempfile.mkdtemp(dir=cache_dir))
    shutil.copyfile(graph, staging / "model.onnx")
    for name in COPIED:
        shutil.copyfile(weights_dir / name, staging / name)
    cosines = (OnnxRunner(staging, threads=0)(CHECK_TEXTS, 32) * reference).sum(axis=1)
    least, mean = float(cosines.min()), float(cosines.mean())
    check = {"min_cosine": least, "mean_cosine": mean, "bound": BOUNDS[backend]}
    if least < BOUNDS[backend]["min"] or mean < BOUNDS[backend]["mean"]:
        shutil.rmtree(staging)
        raise RuntimeError(f"{spec.key} {backend} strays from torch beyond its bound: {check}")
    manifest = {
        "model": spec.name,
        "key": spec.key,
        "version": spec.version,
        "backend": backend,
        "weights_sha256": digest,
        "dimensions": int(reference.shape[1]),
        "check": check,
        "tools": _tool_versions(),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    target = artifact_dir(cache_dir, spec, backend)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return manifest


def _tool_versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("torch", "onnx", "onnxruntime", "sentence-transformers")}


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-minilm-l6-v2")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: EMBED_MODEL_DIR or ~/.cache")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached export is current")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    for backend, manifest in export(model_spec(args.model), cache_dir, args.force).items():
        check = manifest["check"]
        print(f"{args.model} {backend}: {artifact_dir(cache_dir, model_spec(args.model), backend)} {check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
