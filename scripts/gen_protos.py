"""Generate the Python contracts package from protos/ with grpcio-tools.

Usage: uv run python scripts/gen_protos.py [--out DIR]
The output under libs/contracts/src is generated: never edit it by hand.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "protos"
DEFAULT_OUT = ROOT / "libs" / "contracts" / "src"
PACKAGE_DIRS = ("rag", "rag/v1")


def generate(out: Path) -> list[Path]:
    """Compile every .proto under protos/ into `out`; return the files written."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for package in PACKAGE_DIRS:
            (Path(tmp) / package / "__init__.py").touch()
        # PEP 561: the .pyi stubs are the package's types, so mypy checks messages and stubs, not `Any`.
        (Path(tmp) / "rag" / "py.typed").touch()
        target = out / "rag"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(tmp) / "rag", target)
    return sorted(p for p in target.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    written = generate(parser.parse_args().out)
    print(f"generated {len(written)} files", file=sys.stderr)


if __name__ == "__main__":
    main()
