""".github/workflows: actionlint passes, actions are pinned to commits, permissions stay minimal, CI runs every
test tier, images are scanned, signed and recorded by digest, and deploys go dev <- main, staging and then an
approved production <- v* tags, migrations before the Rollouts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ragstream_common.registry import SERVICE_NAMES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT_VERSION = "v1.7.7"
LOCAL_BIN = ROOT / ".cache" / "bin"
GO = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
# What any job may be granted: read the code, read another run's artifacts, mint an OIDC token (AWS, cosign).
ALLOWED_PERMISSIONS = {("contents", "read"), ("actions", "read"), ("id-token", "write")}


def workflow(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    # YAML 1.1 reads the bare key `on` as True.
    loaded["on"] = loaded.pop(True)
    return dict(loaded)


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def actionlint() -> str:
    local = LOCAL_BIN / "actionlint"
    found = shutil.which("actionlint") or (str(local) if local.exists() else None)
    if found:
        return found
    if GO is None:
        pytest.skip("actionlint not installed and Go absent to build it (go install github.com/rhysd/actionlint)")
    subprocess.run(
        [GO, "install", f"github.com/rhysd/actionlint/cmd/actionlint@{ACTIONLINT_VERSION}"],
        env={**os.environ, "GOBIN": str(LOCAL_BIN)},
        check=True,
        capture_output=True,
        timeout=600,
    )
    return str(LOCAL_BIN / "actionlint")


def test_actionlint_passes() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {"ci.yml", "images.yml", "deploy.yml"} <= {Path(f).name for f in files}
    linted = subprocess.run([actionlint(), *files], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_every_action_is_pinned_to_a_commit_with_its_tag_beside_it() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        uses = re.findall(r"uses:\s*(\S+)(.*)", path.read_text())
        assert uses, path
        for reference, comment in uses:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", reference), f"{path.name}: {reference}"
            assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), f"{path.name}: {reference} names no tag"


@pytest.mark.parametrize("name", ["ci", "images", "deploy"])
def test_permissions_are_minimal(name: str) -> None:
    flow = workflow(name)
    assert set(flow["permissions"].items()) <= {("contents", "read")}, "the workflow default grants no writes"
    for job_name, job in flow["jobs"].items():
        granted = set(job.get("permissions", {}).items())
        assert granted <= ALLOWED_PERMISSIONS, f"{name}/{job_name}: {granted - ALLOWED_PERMISSIONS}"
        oidc_users = steps_using(job, "aws-actions/configure-aws-credentials") or "cosign sign" in run_text(job)
        assert (("id-token", "write") in granted) == bool(oidc_users), f"{name}/{job_name}: OIDC only where used"
        checkouts = steps_using(job, "actions/checkout")
        assert all(step["with"]["persist-credentials"] is False for step in checkouts), f"{name}/{job_name}"


def test_ci_runs_every_test_tier_with_its_services() -> None:
    flow = workflow("ci")
    assert flow["concurrency"]["group"]
    matrix = flow["jobs"]["test"]["strategy"]["matrix"]["include"]
    tiers = {entry["path"] for entry in matrix}
    with_tests = {f"tests/{d.name}" for d in (ROOT / "tests").iterdir() if any(d.glob("test_*.py"))}
    assert tiers == with_tests, "every directory of tests runs in some tier"
    markers = {entry["path"]: entry["marker"] for entry in matrix}
    assert markers["tests/chaos"] == "chaos_fast" and markers["tests/unit"] == "not chaos or chaos_fast"
    test = flow["jobs"]["test"]
    (java,) = steps_using(test, "actions/setup-java")
    assert java["with"]["java-version"] == "17"
    assert "prometheus" in run_text(test) and "redis-server" in run_text(test)
    for job in flow["jobs"].values():
        for uv in steps_using(job, "astral-sh/setup-uv"):
            assert uv["with"]["enable-cache"] is True
    checks = run_text(flow["jobs"]["check"])
    assert all(tool in checks for tool in ("ruff check", "ruff format --check", "mypy", "lint-imports"))
    assert "make check-infra" in run_text(flow["jobs"]["infra"])
    assert "scripts/coverage_report.py" in run_text(flow["jobs"]["coverage"])


def test_images_are_scanned_before_they_are_pushed_then_signed_and_recorded() -> None:
    flow = workflow("images")
    registry_step = flow["jobs"]["services"]["steps"][-1]["run"]
    assert "from ragstream_common.registry import SERVICES" in registry_step
    job = flow["jobs"]["image"]
    builds = steps_using(job, "docker/build-push-action")
    (scan,) = steps_using(job, "aquasecurity/trivy-action")
    assert scan["with"]["severity"] == "CRITICAL" and scan["with"]["exit-code"] == "1"
    order = [step.get("uses", "") for step in job["steps"]]
    assert order.index(scan["uses"]) > order.index(builds[0]["uses"]), "scan what was built"
    loaded, pushed = builds
    assert loaded["with"]["load"] is True and loaded["with"]["push"] is False
    assert pushed["with"]["push"] is True and pushed["with"]["provenance"] == "mode=max"
    # The Dockerfile's build arguments, from the registry's ports.
    dockerfile_args = set(re.findall(r"^ARG (\w+)", (ROOT / "services" / "Dockerfile").read_text(), re.MULTILINE))
    for build in builds:
        given = dict(line.split("=", 1) for line in build["with"]["build-args"].splitlines())
        assert given == {
            "SERVICE": "${{ matrix.service }}",
            "GRPC_PORT": "${{ matrix.grpc_port }}",
            "SECOND_PORT": "${{ matrix.metrics_port }}",
        }
        assert given.keys() <= dockerfile_args
    assert steps_using(job, "anchore/sbom-action") and "cosign sign --yes" in run_text(job)
    uploads = steps_using(flow["jobs"]["digests"], "actions/upload-artifact")
    assert [u["with"]["name"] for u in uploads] == ["release-digests"]


def plan(work: Path, release: dict[str, str], requested: str = "") -> list[str]:
    """Run deploy.yml's environment choice on a release-digests.json as the images run writes it."""
    script = next(s["run"] for s in workflow("deploy")["jobs"]["resolve"]["steps"] if s.get("id") == "plan")
    if shutil.which("jq") is None:
        pytest.skip("jq not installed")
    with_digests = {**release, "sha": "0" * 40, "images": {}}
    (work / "release-digests.json").write_text(json.dumps(with_digests))
    output = work / "output"
    output.write_text("")
    env = {**os.environ, "GITHUB_OUTPUT": str(output), "REQUESTED": requested}
    subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=work, env=env, check=True, capture_output=True)
    (line,) = output.read_text().splitlines()
    return list(json.loads(line.removeprefix("environments=")))


def test_deploys_main_to_dev_and_tags_to_staging_then_production(tmp_path: Path) -> None:
    assert plan(tmp_path, {"ref_type": "branch", "ref_name": "main"}) == ["dev"]
    assert plan(tmp_path, {"ref_type": "tag", "ref_name": "v1.4.0"}) == ["staging", "production"]
    assert plan(tmp_path, {"ref_type": "branch", "ref_name": "feature/x"}) == []
    assert plan(tmp_path, {"ref_type": "tag", "ref_name": "nightly"}) == []
    assert plan(tmp_path, {"ref_type": "branch", "ref_name": "main"}, requested="production") == ["production"]


def test_production_waits_for_approval_and_each_environment_deploys_alone() -> None:
    flow = workflow("deploy")
    assert flow["on"]["workflow_run"] == {"workflows": ["images"], "types": ["completed"]}
    release, promote = flow["jobs"]["release"], flow["jobs"]["promote-production"]
    assert release["environment"] == "${{ matrix.environment }}"
    assert release["strategy"]["max-parallel"] == 1 and release["strategy"]["fail-fast"] is True
    assert release["concurrency"] == {"group": "deploy-${{ matrix.environment }}", "cancel-in-progress": False}
    # The second approval: the gateway's switch in production is a job of its own in the protected environment.
    assert promote["environment"] == "production" and "promote gateway" in run_text(promote)
    assert "environment" not in flow["jobs"]["resolve"]


def test_deploy_pins_images_by_digest_and_migrates_before_the_rollouts() -> None:
    release = workflow("deploy")["jobs"]["release"]
    names = [step.get("name", step.get("uses", step.get("run", ""))) for step in release["steps"]]
    render = release["steps"][names.index("render the overlay with the images by digest")]["run"]
    assert "kustomize edit set image" in render and "@sha256:" in render
    assert names.index("verify the images' signatures") < names.index("migrations and topics") < names.index("apply")
    migrate = release["steps"][names.index("migrations and topics")]["run"]
    (excluded,) = re.findall(r"notin \(([^)]*)\)", migrate)
    assert set(excluded.split(",")) == set(SERVICE_NAMES), "the first apply holds none of the services' objects"
    assert "job/migrate" in migrate and "--for=condition=complete" in migrate
    assert 'kubectl argo rollouts -n "$NAMESPACE" status' in run_text(release)


def test_images_matrix_is_read_from_the_registry(tmp_path: Path) -> None:
    step = workflow("images")["jobs"]["services"]["steps"][-1]
    output = tmp_path / "output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output), **step["env"]}
    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=ROOT, env=env, check=True, timeout=60)
    (line,) = output.read_text().splitlines()
    matrix = json.loads(line.removeprefix("matrix="))["include"]
    assert [entry["service"] for entry in matrix] == list(SERVICE_NAMES)
    assert all({"grpc_port", "metrics_port"} <= entry.keys() for entry in matrix)
