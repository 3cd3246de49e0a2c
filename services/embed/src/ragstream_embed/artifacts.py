"""Where the exported ONNX backends of a model live, and what their manifest says."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ragstream_embed.models import ModelSpec

ONNX_BACKENDS = ("onnx", "onnx-int8")


def default_cache_dir() -> Path:
    """EMBED_MODEL_DIR (the image sets it), else the user's cache directory."""
    configured = os.environ.get("EMBED_MODEL_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ragstream" / "models"


def artifact_dir(cache_dir: Path, spec: ModelSpec, backend: str) -> Path:
    return cache_dir / spec.key / backend


def read_manifest(directory: Path) -> dict[str, object] | None:
    try:
        return json.loads((directory / "manifest.json").read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
