"""How the encoder finds its backend: a missing export is built on first use only where the export tools are
installed; elsewhere (the runtime image) the error names the command that builds it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ragstream_embed.adapters import encoder as encoder_module
from ragstream_embed.models import EncoderOptions, model_spec

pytestmark = pytest.mark.unit


def test_without_the_export_tools_a_missing_export_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    )
    with pytest.raises(RuntimeError, match=r"python -m ragstream_embed\.onnx_export"):
        encoder_module._export_missing(
            model_spec("all-minilm-l6-v2"), "onnx", tmp_path / "x", EncoderOptions(model_dir=tmp_path)
        )


def test_unknown_models_are_refused_with_the_ones_available() -> None:
    with pytest.raises(ValueError, match="available: all-minilm-l6-v2"):
        model_spec("bge-huge")
