"""`make check-infra`: offline infrastructure checks (kustomize, kubeconform, checkov against
infra/checkov-baseline.json, hadolint, terraform, promtool, actionlint); see docs/infrastructure-checks.md.

    uv run --frozen python scripts/check_infra.py [--only CHECK ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from ragstream_devstack.check_infra.cli import main

if __name__ == "__main__":
    sys.exit(main(["--root", str(Path(__file__).resolve().parents[1]), *sys.argv[1:]]))
