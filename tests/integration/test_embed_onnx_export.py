"""The ONNX export on the real weights: both backends published with a manifest that records the check against
torch; a current export is not rebuilt; a graph that strays beyond its bound is never published; the encoder
exports on first use when nothing is cached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ragstream_embed import onnx_export
from ragstream_embed.adapters.encoder import Encoder
from ragstream_embed.artifacts import artifact_dir, read_manifest
from ragstream_embed.models import EncoderOptions, model_spec

pytestmark = pytest.mark.integration

SPEC = model_spec("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported through the encoder's first-use path (nothing cached in this directory)."""
    directory = tmp_path_factory.mktemp("models")
    encoder = Encoder.load(EncoderOptions(backend="onnx-int8", query_backend="onnx", model_dir=directory))
    encoder.close()
    return directory


def test_both_backends_are_published_with_their_check_against_torch(cache_dir: Path) -> None:
    for backend, bound in onnx_export.BOUNDS.items():
        directory = artifact_dir(cache_dir, SPEC, backend)
        manifest = read_manifest(directory)
        assert manifest is not None
        assert {p.name for p in directory.iterdir()} == {"model.onnx", "manifest.json", *onnx_export.COPIED}
        assert manifest["model"] == SPEC.name and manifest["dimensions"] == 384
        assert manifest["weights_sha256"] == onnx_export.weights_digest(SPEC.weights_dir())
        check = manifest["check"]
        assert check["min_cosine"] >= bound["min"] and check["mean_cosine"] >= bound["mean"]
    int8 = artifact_dir(cache_dir, SPEC, "onnx-int8") / "model.onnx"
    fp32 = artifact_dir(cache_dir, SPEC, "onnx") / "model.onnx"
    assert int8.stat().st_size < fp32.stat().st_size / 3


def test_a_current_export_is_kept_and_main_reports_it(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = artifact_dir(cache_dir, SPEC, "onnx") / "model.onnx"
    before = model.stat().st_mtime_ns
    assert onnx_export.main(["--cache-dir", str(cache_dir)]) == 0
    assert model.stat().st_mtime_ns == before
    assert "all-minilm-l6-v2 onnx-int8" in capsys.readouterr().out


def test_a_graph_beyond_its_bound_is_not_published(cache_dir: Path, tmp_path: Path) -> None:
    graph = artifact_dir(cache_dir, SPEC, "onnx-int8") / "model.onnx"
    # Torch's vectors for other texts: nothing like what the graph computes.
    elsewhere = np.roll(np.eye(len(onnx_export.CHECK_TEXTS), 384, dtype=np.float32), 7, axis=1)
    with pytest.raises(RuntimeError, match="strays from torch beyond its bound"):
        onnx_export._publish(SPEC, "onnx-int8", graph, SPEC.weights_dir(), "digest", elsewhere, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_manifest_from_other_weights_is_stale(cache_dir: Path, tmp_path: Path) -> None:
    for backend in onnx_export.BOUNDS:
        target = artifact_dir(tmp_path, SPEC, backend)
        target.mkdir(parents=True)
        manifest = {**read_manifest(artifact_dir(cache_dir, SPEC, backend)), "weights_sha256": "other"}  # type: ignore[dict-item]
        (target / "manifest.json").write_text(json.dumps(manifest))
    rebuilt = onnx_export.export(SPEC, tmp_path)
    assert all(m["weights_sha256"] != "other" for m in rebuilt.values())
    assert (artifact_dir(tmp_path, SPEC, "onnx") / "model.onnx").exists()
