"""House rules that keep the services honest about their boundaries."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "sentence_transformers", "transformers"}
NON_EMBED_SERVICES = ["gateway", "ingest", "retrieve", "generate"]


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_embed_imports_torch_or_sentence_transformers() -> None:
    offenders = []
    for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        if "services/embed/" in path.as_posix():
            continue
        if _imported_roots(path) & HEAVY:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_only_embed_depends_on_torch_stacks() -> None:
    for pyproject in ROOT.glob("*/*/pyproject.toml"):
        text = pyproject.read_text()
        if "services/embed" in pyproject.as_posix():
            assert "sentence-transformers" in text
            continue
        assert "sentence-transformers" not in text and '"torch' not in text, pyproject


@pytest.mark.parametrize("service", NON_EMBED_SERVICES)
def test_composition_roots_import_without_torch_and_without_io(service: str) -> None:
    """Importing app.py builds nothing: no torch, no sockets (a blocked socket module proves it)."""
    module = f"ragstream_{service}.app"
    code = (
        "import socket, sys\n"
        "def _no_io(*a, **k):\n    raise AssertionError('I/O at import')\n"
        "socket.socket.connect = _no_io\n"
        f"import importlib.util\n"
        f"if importlib.util.find_spec('{module}') is None: sys.exit(3)\n"
        f"import {module}\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'sentence_transformers' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# What each service may leave out of its install: the extras of ragstream-common it does not declare.
OPTIONAL_DRIVERS = {
    "postgres": ("psycopg", "psycopg_pool", "pgvector"),
    "s3": ("boto3", "botocore"),
    "msk": ("aws_msk_iam_sasl_signer",),
}


def _declared_common_extras(service: str) -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    (common,) = [d for d in project["dependencies"] if d.startswith("ragstream-common")]
    return set(common.partition("[")[2].rstrip("]").split(",")) - {""}


@pytest.mark.parametrize("service", [*NON_EMBED_SERVICES, "embed"])
def test_a_service_imports_no_driver_of_an_extra_it_does_not_declare(service: str) -> None:
    """Block every driver the service's pyproject leaves out; its composition root must still import."""
    blocked = [
        m
        for extra, modules in OPTIONAL_DRIVERS.items()
        if extra not in _declared_common_extras(service)
        for m in modules
    ]
    code = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\nimport ragstream_{service}.app\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_generate_needs_no_database_driver_and_no_service_pulls_every_extra() -> None:
    assert "postgres" not in _declared_common_extras("generate")
    assert "s3" not in _declared_common_extras("embed") | _declared_common_extras("retrieve")
    common = (ROOT / "libs" / "common" / "pyproject.toml").read_text()
    dependencies = common.split("[project.optional-dependencies]")[0]
    assert not any(driver in dependencies for driver in ("psycopg", "pgvector", "boto3", "aws-msk-iam"))
