""".github/workflows: actionlint passes, actions are pinned to commits, permissions stay minimal, CI runs every
test tier, images are built only after all of CI passed and are scanned, signed and recorded by digest, deploys
refuse a run whose CI failed and go dev <- main, staging and then an approved production <- v* tags, migrations
first, then a wait on what each overlay renders (Rollouts in staging and prod, Deployments in dev)."""

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
    return [step for step in job.get("steps", []) if step.get("uses", "").startswith(f"{action}@")]


def run_text(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def named_step(job: dict[str, Any], name: str) -> dict[str, Any]:
    (step,) = (step for step in job["steps"] if step.get("name") == name)
    return dict(step)


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
            if reference.startswith("./"):  # a workflow of this repository: the same commit, pinned by nature
                assert (ROOT / reference).is_file(), f"{path.name}: {reference}"
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", reference), f"{path.name}: {reference}"
            assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), f"{path.name}: {reference} names no tag"


@pytest.mark.parametrize("name", ["ci", "images", "deploy"])
def test_permissions_are_minimal(name: str) -> None:
    flow = workflow(name)
    assert set(flow["permissions"].items()) <= {("contents", "read")}, "the workflow default grants no writes"
    for job_name, job in flow["jobs"].items():
        granted = set(job.get("permissions", {}).items())
        assert granted <= ALLOWED_PERMISSIONS, f"{name}/{job_name}: {granted - ALLOWED_PERMISSIONS}"
        if "uses" in job:  # a called workflow: exactly what its own jobs ask for
            called = workflow(Path(job["uses"]).stem)["jobs"].values()
            assert granted == {p for j in called for p in j.get("permissions", {}).items()} | {("contents", "read")}
            continue
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
    """Run deploy.yml's environment choice on a release-digests.json as the ci run's images job writes it."""
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
    assert flow["on"]["workflow_run"] == {"workflows": ["ci"], "types": ["completed"]}
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


# ---- Only what CI passed ships ----


def test_images_are_built_only_after_every_ci_job_passed_on_a_push() -> None:
    ci = workflow("ci")
    images = ci["jobs"]["images"]
    assert images["uses"] == "./.github/workflows/images.yml"
    assert set(images["needs"]) == set(ci["jobs"]) - {"images"}, "every check and test tier gates the images"
    assert images["if"] == "github.event_name == 'push'"
    assert set(ci["on"]["push"]) == {"branches", "tags"} and ci["on"]["push"]["tags"] == ["v*"]
    # images.yml has no trigger of its own that could build a commit CI has not passed.
    assert workflow("images")["on"] == {"workflow_call": None}
    resolve = workflow("deploy")["jobs"]["resolve"]
    for condition in ("workflow_run.conclusion == 'success'", "workflow_run.event == 'push'"):
        assert condition in resolve["if"]


def ci_run_check(work: Path, run: dict[str, str], digests_sha: str) -> subprocess.CompletedProcess[str]:
    """deploy.yml's check of the ci run, with `gh api` answering `run` as GitHub's runs API would."""
    if shutil.which("jq") is None:
        pytest.skip("jq not installed")
    step = named_step(workflow("deploy")["jobs"]["resolve"], "the ci run passed")
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    gh = bin_dir / "gh"
    fields = "\t".join(run[key] for key in ("path", "event", "conclusion", "head_sha"))
    gh.write_text(f"#!/bin/bash\nprintf '%s\\n' '{fields}'\n")
    gh.chmod(0o755)
    (work / "release-digests.json").write_text(json.dumps({"sha": digests_sha, "images": {}}))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RUN_ID": "42", "GITHUB_REPOSITORY": "o/r"}
    script = step["run"]
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True, text=True)


def test_a_deploy_refuses_a_run_whose_ci_failed_or_that_tested_another_commit(tmp_path: Path) -> None:
    sha = "a" * 40
    passed = {"path": ".github/workflows/ci.yml", "event": "push", "conclusion": "success", "head_sha": sha}
    assert ci_run_check(tmp_path, passed, sha).returncode == 0
    for change in ({"conclusion": "failure"}, {"conclusion": "cancelled"}, {"event": "workflow_dispatch"}):
        refused = ci_run_check(tmp_path, {**passed, **change}, sha)
        assert refused.returncode == 1 and "not a successful ci run" in refused.stderr, change
    other = ci_run_check(tmp_path, passed, "b" * 40)
    assert other.returncode == 1 and "another commit" in other.stderr


# ---- The wait follows what the overlay renders ----

EKS_OVERLAYS = ("dev", "staging", "prod")
WORKLOAD_KINDS = ("Rollout", "Deployment")


def rendered_kinds(render: str) -> dict[str, set[str]]:
    """service -> the workload kinds the render holds under its name."""
    kinds: dict[str, set[str]] = {}
    for document in yaml.safe_load_all(render):
        if document and document["kind"] in WORKLOAD_KINDS:
            kinds.setdefault(document["metadata"]["name"], set()).add(document["kind"])
    return kinds


def run_step(step: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, str]:
    output = work / "output"
    output.write_text("")
    full = {**os.environ, "GITHUB_OUTPUT": str(output), "NAMESPACE": "ragstream", **env}
    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], cwd=work, env=full, check=True, timeout=120)
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


@pytest.mark.parametrize("overlay", EKS_OVERLAYS)
def test_the_deploy_waits_on_the_workload_kinds_its_overlay_renders(overlay: str, tmp_path: Path) -> None:
    if shutil.which("kubectl") is None or shutil.which("yq") is None or shutil.which("jq") is None:
        pytest.skip("kubectl (kustomize), yq and jq are needed to run the steps")
    render = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "infra" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    (tmp_path / "rendered.yaml").write_text(render)
    images = {s: {"repository": f"r/{s}", "digest": "sha256:" + "1" * 64} for s in SERVICE_NAMES}
    (tmp_path / "release-digests.json").write_text(json.dumps({"images": images}))
    release = workflow("deploy")["jobs"]["release"]
    planned = run_step(named_step(release, "the workloads to wait for"), tmp_path, {})
    rollouts, deployments = planned["rollouts"].split(), planned["deployments"].split()
    kinds = rendered_kinds(render)
    # A Rollout where the overlay has one (blue-green), the Deployment where it has none.
    assert set(rollouts) == {s for s in SERVICE_NAMES if "Rollout" in kinds.get(s, set())}
    assert set(deployments) == {s for s in SERVICE_NAMES if kinds.get(s) == {"Deployment"}}
    assert sorted(rollouts + deployments) == sorted(SERVICE_NAMES)
    # dev runs plain Deployments; staging and prod every service as a blue-green Rollout.
    assert set(rollouts) == (set() if overlay == "dev" else set(SERVICE_NAMES))

    # The wait itself, against a kubectl that records what it is asked (a Healthy, unchanged gateway).
    bin_dir, log = tmp_path / "bin", tmp_path / "kubectl.log"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(
        '#!/bin/bash\necho "$*" >> "$KUBECTL_LOG"\n'
        'case "$*" in *"get deployment"*) echo 3 ;; *"get rollout gateway"*) echo "Healthy|h|h|" ;; esac\n'
    )
    (bin_dir / "kubectl").chmod(0o755)
    wait = named_step(release, "wait for the new release")
    assert wait["env"]["ROLLOUTS"] == "${{ steps.workloads.outputs.rollouts }}"
    assert wait["env"]["DEPLOYMENTS"] == "${{ steps.workloads.outputs.deployments }}"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBECTL_LOG": str(log),
        "ROLLOUTS": planned["rollouts"],
        "DEPLOYMENTS": planned["deployments"],
        "ENVIRONMENT": "production" if overlay == "prod" else overlay,
    }
    run_step(wait, tmp_path, env)
    calls = log.read_text() if log.exists() else ""
    for service in SERVICE_NAMES:
        as_rollout = f"rollout/{service} " in calls
        as_deployment = f"rollout status deployment/{service} " in calls
        assert (as_rollout, as_deployment) == (service in rollouts, service in deployments), (service, calls)
    assert ("argo rollouts" in calls) == bool(rollouts), "the Argo plugin only where Rollouts run"
    install = named_step(release, "kubectl argo rollouts")
    assert install["if"] == "steps.workloads.outputs.rollouts != ''"
