"""scripts/check_infra.py (`make check-infra`): the baseline comparison, the summary, the parsing of each tool's
report on small inputs, and one real run of the cheap checks (hadolint, terraform fmt) on this repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ragstream_devstack.check_infra.cli import main, proposed_entries
from ragstream_devstack.check_infra.kubernetes import discover_overlays, kubeconform_findings, standalone
from ragstream_devstack.check_infra.results import (
    BaselineEntry,
    BaselineError,
    CheckResult,
    Finding,
    apply_baseline,
    compare_with_baseline,
    format_summary,
    load_baseline,
)
from ragstream_devstack.check_infra.scanners import check_hadolint, checkov_findings
from ragstream_devstack.check_infra.strict_checks import check_terraform, parse_actionlint
from ragstream_devstack.check_infra.tools import uv_command

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DIGEST = Finding("CKV_K8S_43", "Deployment.ragstream.gateway", "infra/k8s/overlays/aws", "Image should use digest")
ROTATION = Finding("CKV2_AWS_57", 'module.postgres.aws_secretsmanager_secret.login["gateway"]', "infra/terraform/x.tf")


def entry(rule: str, resource: str, source: str) -> BaselineEntry:
    return BaselineEntry(rule, resource, source, reason="reviewed")


def test_a_finding_in_the_baseline_is_not_new_and_one_outside_it_is() -> None:
    other = Finding("CKV_K8S_43", "Deployment.ragstream.embed", "infra/k8s/overlays/aws")
    new, stale = compare_with_baseline([DIGEST, other], [entry(DIGEST.rule, DIGEST.resource, DIGEST.source)])
    assert new == [other]
    assert stale == []


def test_the_rule_resource_and_source_must_all_match() -> None:
    baseline = [
        entry("CKV_K8S_15", DIGEST.resource, DIGEST.source),
        entry(DIGEST.rule, DIGEST.resource, "infra/k8s/overlays/prod"),
        entry(DIGEST.rule, "Deployment.ragstream.embed", DIGEST.source),
    ]
    new, stale = compare_with_baseline([DIGEST], baseline)
    assert new == [DIGEST]
    assert stale == baseline


def test_patterns_match_and_brackets_in_resource_names_match_exactly() -> None:
    pattern = entry(DIGEST.rule, "Deployment.ragstream.*", "infra/k8s/overlays/*")
    bracketed = entry(ROTATION.rule, ROTATION.resource, ROTATION.source)
    new, stale = compare_with_baseline([DIGEST, ROTATION], [pattern, bracketed])
    assert (new, stale) == ([], [])
    assert compare_with_baseline([ROTATION], [entry(ROTATION.rule, "*.login[[]*", ROTATION.source)]) == ([], [])


def test_entries_that_match_nothing_are_reported_stale() -> None:
    gone = entry("CKV_AWS_18", "module.blobstore.aws_s3_bucket.this", "infra/terraform/modules/blobstore/main.tf")
    result = apply_baseline(CheckResult("checkov", findings=[DIGEST]), [gone])
    assert result.new_findings == [DIGEST]
    assert result.stale_entries == [gone]
    assert result.failed


def test_load_baseline_requires_a_reason_for_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"findings": [{"rule": "CKV_1", "resource": "r", "source": "s", "reason": " "}]}))
    with pytest.raises(BaselineError, match="entry 0 lacks reason"):
        load_baseline(path)
    path.write_text(json.dumps({"findings": [{"rule": "CKV_1", "resource": "r", "source": "s", "reason": "why"}]}))
    assert load_baseline(path) == [BaselineEntry("CKV_1", "r", "s", "why")]
    assert load_baseline(tmp_path / "absent.json") == []


def test_the_repository_baseline_loads_with_a_reason_per_entry() -> None:
    entries = load_baseline(ROOT / "infra" / "checkov-baseline.json")
    assert entries
    assert all(len(item.reason) > 40 for item in entries)
    assert len({(item.rule, item.resource, item.source) for item in entries}) == len(entries)


def test_the_summary_names_each_check_its_findings_and_the_verdict() -> None:
    passed = CheckResult("terraform", checked="3 .tf files", notes=["validate not run offline"], seconds=1.25)
    failed = apply_baseline(
        CheckResult("checkov", checked="terraform 9 resources", findings=[DIGEST, ROTATION], seconds=4.0),
        [entry(ROTATION.rule, ROTATION.resource, ROTATION.source)],
    )
    broken = CheckResult("hadolint", error="hadolint not found")
    text = format_summary([passed, failed, broken], seconds=12.34)
    lines = text.splitlines()
    assert lines[0] == "check-infra: 3 checks"
    assert lines[1] == "ok    terraform   3 .tf files; 0 findings (0 in baseline, 0 new)  [1.2s]"
    assert "        note: validate not run offline" in lines
    assert "FAIL  checkov     terraform 9 resources; 2 findings (1 in baseline, 1 new)  [4.0s]" in lines
    assert f"        new: {DIGEST.describe()}" in lines
    assert "        error: hadolint not found" in lines
    assert lines[-1] == "check-infra FAILED (checkov, hadolint) in 12.3s total"
    assert format_summary([passed], 2.0).splitlines()[-1] == "check-infra passed in 2.0s total"


def test_proposed_entries_carry_an_empty_reason_to_fill_in() -> None:
    result = apply_baseline(CheckResult("checkov", findings=[DIGEST]), [])
    assert proposed_entries([result]) == [
        {"rule": DIGEST.rule, "resource": DIGEST.resource, "source": DIGEST.source, "reason": ""}
    ]


def test_kubeconform_errors_and_invalid_resources_are_findings_per_overlay() -> None:
    report = {
        "resources": [
            {"filename": "/t/a.yaml", "kind": "Telemetry", "name": "tracing", "version": "telemetry.istio.io/v1",
             "status": "statusError", "msg": "could not find schema for Telemetry"},
            {"filename": "/t/b.yaml", "kind": "Service", "name": "x", "version": "v1", "status": "statusInvalid",
             "msg": "additionalProperties 'bogus' not allowed"},
            {"filename": "/t/b.yaml", "kind": "Service", "name": "y", "version": "v1", "status": "statusValid"},
        ]
    }  # fmt: skip
    findings = kubeconform_findings(report, {"/t/a.yaml": "infra/istio", "/t/b.yaml": "infra/k8s/overlays/dev"})
    assert [(f.rule, f.resource, f.source) for f in findings] == [
        ("kubeconform-error", "Telemetry/tracing (telemetry.istio.io/v1)", "infra/istio"),
        ("kubeconform-invalid", "Service/x (v1)", "infra/k8s/overlays/dev"),
    ]


def test_standalone_schemas_inline_only_the_definitions_they_reach() -> None:
    definitions = {
        "Spec": json.dumps({"properties": {"meta": {"$ref": "#/$defs/Meta"}}}),
        "Meta": json.dumps({"type": "object"}),
        "Unused": json.dumps({"type": "string"}),
    }
    schema_text = json.dumps(
        {"$id": "https://k8s/x", "properties": {"spec": {"$ref": "/api/_definitions.json#/$defs/Spec"}}}
    )
    schema = standalone(schema_text, definitions)
    assert "$id" not in schema
    assert schema["properties"]["spec"]["$ref"] == "#/$defs/Spec"
    assert set(schema["$defs"]) == {"Spec", "Meta"}
    assert schema["$defs"]["Spec"]["properties"]["meta"]["$ref"] == "#/$defs/Meta"


def test_overlays_are_discovered_and_components_left_to_the_overlays_that_use_them(tmp_path: Path) -> None:
    for name, kind in [("infra/k8s/overlays/prod", "Kustomization"), ("infra/k8s/overlays/blue-green", "Component"),
                       ("infra/istio", "Kustomization")]:  # fmt: skip
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "kustomization.yaml").write_text(f"kind: {kind}\n")
    (tmp_path / "infra/k8s/overlays/notes").mkdir()
    found = [str(path.relative_to(tmp_path)) for path in discover_overlays(tmp_path)]
    assert found == ["infra/k8s/overlays/prod", "infra/istio"]


def test_checkov_paths_map_to_overlays_and_repository_files() -> None:
    report = {
        "check_type": "kubernetes",
        "results": {
            "failed_checks": [
                {"check_id": "CKV_K8S_43", "resource": "Deployment.ragstream.gateway", "check_name": "digest",
                 "file_path": "/rendered/infra__k8s__overlays__aws.yaml"},
                {"check_id": "CKV_DOCKER_7", "resource": "/services/Dockerfile.FROM", "check_name": "tag",
                 "file_path": "/services/Dockerfile"},
            ]
        },
    }  # fmt: skip
    findings = checkov_findings([report], {"rendered/infra__k8s__overlays__aws.yaml": "infra/k8s/overlays/aws"})
    assert [(f.rule, f.resource, f.source) for f in findings] == [
        ("CKV_K8S_43", "Deployment.ragstream.gateway", "infra/k8s/overlays/aws"),
        ("CKV_DOCKER_7", "services/Dockerfile.FROM", "services/Dockerfile"),
    ]


def test_actionlint_output_is_parsed_and_garbage_is_a_tool_failure() -> None:
    output = '[{"message":"bad","filepath":".github/workflows/ci.yml","line":3,"column":5,"kind":"syntax-check"}]'
    (finding,) = parse_actionlint(output) or []
    assert (finding.rule, finding.resource, finding.source) == ("syntax-check", "line 3:5", ".github/workflows/ci.yml")
    assert parse_actionlint("") == []
    assert parse_actionlint("panic: boom") is None


def test_only_rejects_an_unknown_check() -> None:
    with pytest.raises(SystemExit):
        main(["--only", "nonsense"])


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_fmt_passes_on_the_repository() -> None:
    result = check_terraform(ROOT, fmt_only=True)
    assert not result.error
    assert result.new_findings == []
    assert ".tf files" in result.checked


def test_hadolint_passes_on_the_repository_dockerfile() -> None:
    if shutil.which(uv_command()[0]) is None and not Path(uv_command()[0]).exists():
        pytest.skip("uv not available to run hadolint")
    result = check_hadolint(ROOT)
    assert not result.error, result.error
    assert result.new_findings == []
    assert "services/Dockerfile" in result.checked
