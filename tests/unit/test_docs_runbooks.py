"""docs/: every relative link resolves (file, and heading anchor when given, by GitHub's anchor rules); every alert
has a `runbook_url` into docs/runbooks.md whose anchor exists, and so does every CloudWatch alarm's runbook link in
infra/terraform; the runbook index covers the operational runbooks;
the operations documents name only metrics, settings, commands, admin routes and make targets that exist;
and no document tells operators to act on a Deployment that only templates an Argo Rollout (staging and prod),
to scale an autoscaled service by hand, or to touch an autoscaler or Rollout that the manifests do not declare.

The existence checks are deliberately cheap: they read the source tree (metric names and settings fields as
declared, `python -m` modules with a `__main__` entry, the gateway's routers, the Makefile), never a running system.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNBOOKS = DOCS / "runbooks.md"
RULE_FILES = sorted((ROOT / "infra" / "observability" / "prometheus" / "rules").glob("*.yml"))
TERRAFORM_FILES = sorted((ROOT / "infra" / "terraform").glob("*.tf"))
SOURCE_DIRS = [*sorted((ROOT / "services").glob("*/src")), *sorted((ROOT / "libs").glob("*/src"))]
# The documents written for operations (issue 15): their names of code must be real.
OPERATIONS_DOCS = [
    "README.md",
    "runbooks.md",
    "incident-response.md",
    "troubleshooting.md",
    "performance-tuning.md",
    "operations-checklist.md",
    "security-assessment.md",
    "risk-register.md",
    "change-management.md",
    "audit-verification.md",
    "capacity.md",
]
# Operational runbooks the index must list (anchors in runbooks.md).
REQUIRED_RUNBOOKS = [
    "runbook-dead-letter-queues",
    "runbook-consumer-lag",
    "runbook-stuck-indexing",
    "runbook-rebalancing-storms",
    "runbook-key-and-credential-rotation",
    "runbook-tenant-onboarding-and-offboarding",
    "runbook-connector-failures",
    "runbook-llm-outage",
]
ROTATIONS = ["API keys", "service token", "Kafka SCRAM", "Postgres login", "master key"]
# Suffixes the Prometheus client adds to a declared name: histogram series, and `_total` on counters.
EXPORT_SUFFIXES = ("_bucket", "_count", "_sum", "_total")
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `#` comment in a shell block is no heading)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors_of(path: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown file, duplicates numbered (`-1`, `-2`) as GitHub does."""
    seen: Counter[str] = Counter()
    anchors = set()
    for line in prose_lines(path.read_text()):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = github_anchor(heading.group(1))
            anchors.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
            seen[base] += 1
    return frozenset(anchors)


def relative_links(path: Path) -> list[str]:
    targets = []
    for line in prose_lines(path.read_text()):
        targets += LINK.findall(INLINE_CODE.sub("", line))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto:


def broken_link(source: Path, target: str) -> str | None:
    """Why a relative link does not resolve, or None."""
    file_part, _, anchor = target.partition("#")
    resolved = (source.parent / file_part).resolve() if file_part else source
    if not resolved.exists():
        return f"{source.name}: {target}: no such file"
    if anchor and resolved.suffix == ".md" and anchor not in anchors_of(resolved):
        return f"{source.name}: {target}: no heading with anchor #{anchor}"
    return None


def test_every_relative_link_in_docs_resolves() -> None:
    problems = [p for doc in sorted(DOCS.glob("*.md")) for t in relative_links(doc) if (p := broken_link(doc, t))]
    assert problems == []


def test_link_checker_catches_a_missing_file_and_a_missing_anchor() -> None:
    assert broken_link(RUNBOOKS, "dlq.md#dlq-runbook") is None
    assert broken_link(RUNBOOKS, "#runbook-consumer-lag") is None
    assert broken_link(RUNBOOKS, "no-such-page.md") is not None
    assert broken_link(RUNBOOKS, "dlq.md#no-such-heading") is not None


def test_github_anchor_rules() -> None:
    assert github_anchor("Runbook: key and credential rotation") == "runbook-key-and-credential-rotation"
    assert github_anchor("The hash chain (migration 0008)") == "the-hash-chain-migration-0008"
    assert github_anchor("Settings (`TOKEN_*`, the same names)") == "settings-token_-the-same-names"
    assert github_anchor("See [the DLQ](dlq.md)") == "see-the-dlq"


def alerting_rules() -> list[dict[str, Any]]:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_has_a_runbook_url_whose_anchor_exists() -> None:
    rules = alerting_rules()
    assert rules, "no alerting rules found"
    missing = []
    for rule in rules:
        url = rule.get("annotations", {}).get("runbook_url", "")
        page, _, anchor = str(url).partition("#")
        if page != "docs/runbooks.md" or anchor not in anchors_of(RUNBOOKS):
            missing.append(f"{rule['alert']}: {url or 'no runbook_url'}")
    assert missing == []


def test_runbook_index_lists_every_operational_runbook() -> None:
    text = RUNBOOKS.read_text()
    index = text.split("## Runbook index", 1)[1].split("\n## ", 1)[0]
    for anchor in REQUIRED_RUNBOOKS:
        assert anchor in anchors_of(RUNBOOKS), anchor
        assert f"(#{anchor})" in index, f"the index does not link #{anchor}"


# --- runbook links of the CloudWatch alarms (infra/terraform) ------------------------------------------------

RUNBOOK_PREFIX_LOCAL = re.compile(r'^\s*(\w+)\s*=\s*"[^"]*runbooks\.md#"\s*$', re.M)
TERRAFORM_BLOCK_START = re.compile(r"^(resource|data|module)\b", re.M)


def braced_block(text: str, start: int) -> str:
    """The `{ ... }` block that opens at the first brace at or after `start` (interpolations balance too)."""
    opening, depth = text.index("{", start), 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening : index + 1]
    raise ValueError("unbalanced braces")


def local_map_keys(text: str, name: str) -> list[str]:
    """The top-level keys of a map-valued local written `name = { Key = {...} ... }`."""
    declared = re.search(rf"^\s*{name}\s*=\s*\{{", text, re.M)
    if declared is None:
        return []
    keys, depth = [], 0
    for line in braced_block(text, declared.start())[1:-1].splitlines():
        if depth == 0 and (key := re.match(r"\s*([A-Za-z_][\w-]*)\s*=", line)):
            keys.append(key.group(1))
        depth += line.count("{") - line.count("}")
    return keys


def resolve_runbook_anchor(text: str, position: int, tail: str) -> list[str]:
    """The anchors one link stands for: a literal anchor, or `${lower(each.key)}` over the keys of the enclosing
    block's `for_each = local.<map>`; anything else comes back as written, so that it fails the lookup."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", tail):
        return [tail]
    blocks = [m.start() for m in TERRAFORM_BLOCK_START.finditer(text) if m.start() < position]
    for_each = re.search(r"for_each\s*=\s*local\.(\w+)", braced_block(text, blocks[-1])) if blocks else None
    if tail == "${lower(each.key)}" and for_each and (keys := local_map_keys(text, for_each.group(1))):
        return [key.lower() for key in keys]
    return [tail]


def terraform_runbook_anchors(text: str) -> list[str]:
    """Every runbooks.md anchor that Terraform `text` links: after a literal `runbooks.md#`, or after a local
    that holds that prefix (`runbooks = "docs/runbooks.md#"`, then `${local.runbooks}<anchor>`)."""
    prefixes = [re.escape("runbooks.md#")]
    prefixes += [re.escape(f"${{local.{name}}}") for name in RUNBOOK_PREFIX_LOCAL.findall(text)]
    anchors = []
    for link in re.finditer(rf"(?:{'|'.join(prefixes)})((?:\$\{{[^}}]*\}}|[\w-])*)", text):
        if link.group(1) or not RUNBOOK_PREFIX_LOCAL.match(text, text.rfind("\n", 0, link.start()) + 1):
            anchors += resolve_runbook_anchor(text, link.start(), link.group(1))
    return anchors


TERRAFORM_RUNBOOKS = sorted({a for path in TERRAFORM_FILES for a in terraform_runbook_anchors(path.read_text())})


def test_every_runbook_anchor_linked_from_terraform_exists_and_is_indexed() -> None:
    assert TERRAFORM_RUNBOOKS, "no runbooks.md links found in infra/terraform"
    assert [anchor for anchor in TERRAFORM_RUNBOOKS if anchor not in anchors_of(RUNBOOKS)] == []
    index = RUNBOOKS.read_text().split("## Runbook index", 1)[1].split("\n## ", 1)[0]
    assert [anchor for anchor in TERRAFORM_RUNBOOKS if f"(#{anchor})" not in index] == []


def test_terraform_link_resolver_reads_literals_locals_and_for_each_keys() -> None:
    hcl = """locals {
  runbooks = "docs/runbooks.md#"
  db_alarms = {
    DiskFull = { metric = "Free", nested = { a = 1 } }
    CpuHigh  = {
      metric = "CPU"
    }
  }
}
resource "aws_cloudwatch_metric_alarm" "db" {
  for_each          = local.db_alarms
  alarm_description = "Runbook: ${local.runbooks}${lower(each.key)}"
}
resource "aws_cloudwatch_metric_alarm" "one" {
  alarm_description = "Runbook: ${local.runbooks}redismemoryhigh, also docs/runbooks.md#runbook-llm-outage"
}
resource "aws_cloudwatch_metric_alarm" "computed" {
  alarm_description = "Runbook: ${local.runbooks}${each.value.page}"
}
"""
    anchors = terraform_runbook_anchors(hcl)
    assert sorted(anchors) == ["${each.value.page}", "cpuhigh", "diskfull", "redismemoryhigh", "runbook-llm-outage"]
    assert "${each.value.page}" not in anchors_of(RUNBOOKS)  # an expression we cannot read fails the lookup


def runbook_section(anchor: str) -> str:
    """The text of one `##` section of runbooks.md, found by its anchor."""
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.M)
    return next(s for s in sections if github_anchor(s.splitlines()[0]) == anchor)


@pytest.mark.parametrize("anchor", [*REQUIRED_RUNBOOKS, *TERRAFORM_RUNBOOKS])
def test_each_operational_runbook_has_symptoms_signals_diagnosis_mitigation_and_follow_up(anchor: str) -> None:
    section = runbook_section(anchor)
    for part in ("**Symptoms.**", "**Alerts and dashboards.**", "**Diagnose.**", "**Mitigate.**", "**Follow up.**"):
        assert part in section, f"{anchor}: missing {part}"


def test_rotation_runbook_covers_every_credential() -> None:
    section = runbook_section("runbook-key-and-credential-rotation").lower()
    assert [name for name in ROTATIONS if name.lower() not in section] == []


# --- names of code in the operations documents ---------------------------------------------------------------


@cache
def source_text() -> str:
    return "\n".join(p.read_text() for d in SOURCE_DIRS for p in d.rglob("*.py"))


@cache
def suites_code_text() -> str:
    """The test suites' own code: constants such as `DECLARED_ACCESS` that the documents name."""
    return "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name)


def operations_text() -> str:
    return "\n".join((DOCS / name).read_text() for name in OPERATIONS_DOCS)


def test_every_operations_document_exists_and_is_indexed() -> None:
    index = (DOCS / "README.md").read_text()
    for doc in sorted(DOCS.glob("*.md")):
        assert doc.name == "README.md" or f"]({doc.name})" in index, f"docs/README.md does not list {doc.name}"
    assert [name for name in OPERATIONS_DOCS if not (DOCS / name).is_file()] == []


def unknown_metric_names(text: str) -> set[str]:
    """`ragstream_*` names in `text` that are neither declared metrics nor other names of ours."""
    declared = set(re.findall(r"[\"'](ragstream_[a-z0-9_]+)[\"']", source_text()))
    # Other `ragstream_*` names: Postgres roles and functions (migrations), packages.
    migrations = "\n".join(p.read_text() for p in (ROOT / "libs").rglob("migrations/*.sql"))
    other = set(re.findall(r"\bragstream_[a-z0-9_]+", migrations))
    other |= {p.name for d in SOURCE_DIRS for p in d.iterdir() if p.is_dir()}
    unknown = set()
    for name in set(re.findall(r"\bragstream_[a-z0-9_]+", text)):
        base = next((name.removesuffix(s) for s in EXPORT_SUFFIXES if name.endswith(s)), name)
        if name not in declared and base not in declared and name not in other:
            unknown.add(name)
    return unknown


def test_metric_names_in_the_documents_are_declared_by_the_code() -> None:
    assert unknown_metric_names(operations_text()) == set()
    assert unknown_metric_names("`ragstream_dlq_depth`, `ragstream_db_pool_wait_seconds_total`") == set()
    assert unknown_metric_names("`ragstream_made_up_total`") == {"ragstream_made_up_total"}


@cache
def settings_prefixes() -> tuple[str, ...]:
    return tuple(sorted(set(re.findall(r"env_prefix=\"([A-Z_]+)\"", source_text())), key=len, reverse=True))


@cache
def identifiers() -> frozenset[str]:
    """Every identifier of the code and the tests: aliases, constants, variable names spelled out."""
    return frozenset(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", source_text() + suites_code_text()))


@cache
def declared_fields() -> frozenset[str]:
    """Names annotated at the start of an indented line: settings fields (and other attributes)."""
    return frozenset(re.findall(r"^\s+([a-z_][a-z0-9_]*)\s*:", source_text(), re.M))


def is_known_setting(name: str) -> bool:
    """A name in the code or the tests (an alias, a constant), or `<prefix><field>` of a settings class."""
    if name in identifiers():
        return True
    return any(
        name.startswith(prefix) and name.removeprefix(prefix).lower() in declared_fields()
        for prefix in settings_prefixes()
    )


def test_settings_named_in_the_documents_exist() -> None:
    names = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=[^`]*)?`", operations_text()))
    placeholders = {n for n in names if n.startswith("RAGSTREAM_PG_PASSWORD_")}
    assert names, "no settings named"
    assert sorted(n for n in names - placeholders if not is_known_setting(n)) == []


def test_setting_check_refuses_a_made_up_name() -> None:
    assert is_known_setting("EMBED_ENCODE_BATCH_SIZE")
    assert is_known_setting("GATEWAY_ADMISSION_MAX_IN_FLIGHT")
    assert not is_known_setting("EMBED_TURBO_MODE")


def test_python_modules_run_in_the_documents_have_an_entry_point() -> None:
    modules = set(re.findall(r"python -m ([a-z_][a-z0-9_.]*)", operations_text()))
    assert modules, "no commands named"
    for module in sorted(modules):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, f"{module}: not importable"
        if spec.submodule_search_locations:  # a package runs its __main__.py
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module
        else:
            assert 'if __name__ == "__main__"' in Path(spec.origin).read_text(), f"{module}: no __main__ entry"


@cache
def gateway_routes() -> frozenset[tuple[str, str]]:
    from ragstream_gateway.routes import (
        admin,
        admin_keys,
        admin_tenants,
        audit,
        auth,
        connectors,
        dlq,
        documents,
        health,
        query,
        quotas,
        usage,
        webhooks,
    )

    modules = [admin, admin_keys, admin_tenants, audit, auth, connectors, dlq, documents, health, query, quotas]
    routers = [m.router for m in [*modules, usage, webhooks]] + [connectors.admin_router, usage.admin_router]
    return frozenset(
        (method, re.sub(r"\{[^}]+\}", "{}", route.path))
        for router in routers
        for route in router.routes
        for method in route.methods
    )


def unknown_api_calls(text: str) -> set[str]:
    """`METHOD /path` mentions in `text` that no gateway route serves (path parameters compared as `{}`)."""
    unknown = set()
    for method, path in re.findall(r"\b(GET|POST|PUT|PATCH|DELETE) (/[A-Za-z0-9_{}/.-]*)", text):
        template = re.sub(r"\{[^}]+\}", "{}", path.rstrip("."))
        if (method, template) not in gateway_routes():
            unknown.add(f"{method} {path}")
    return unknown


def test_admin_and_api_calls_in_the_documents_exist() -> None:
    assert unknown_api_calls(operations_text()) == set()
    assert unknown_api_calls("`POST /v1/admin/tenants/{id}/kafka-credentials`") == set()
    assert unknown_api_calls("`POST /v1/admin/tenants/{id}/reboot`") == {"POST /v1/admin/tenants/{id}/reboot"}


def test_make_targets_named_in_the_documents_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9_-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][a-z0-9_-]*)", operations_text()))
    assert named, "no make targets named"
    assert named - targets == set()


# --- Kubernetes commands against what the manifests run ---------------------------------------------------------

K8S = ROOT / "infra" / "k8s"
# Said of a command that is meant for an environment without Rollouts: dev, the in-cluster overlay, base alone.
PLAIN_DEPLOYMENTS = re.compile(r"\bdev\b|plain Deployments?|in-cluster|Kubernetes base|without blue-green", re.I)
LIST_ITEM = re.compile(r"^\s*(?:[-*] |\d+\. |\|)")


def manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def rollout_services() -> frozenset[str]:
    """The services staging and prod run as Argo Rollouts (their Deployments are 0-replica templates)."""
    rollouts = manifests(K8S / "components" / "blue-green" / "rollouts.yaml")
    return frozenset(doc["metadata"]["name"] for doc in rollouts if doc["kind"] == "Rollout")


@cache
def autoscaler_names() -> tuple[frozenset[str], frozenset[str]]:
    """(HPA names as `kubectl get hpa` lists them, ScaledObject names): the component's CPU HPAs and the HPAs KEDA
    creates for its ScaledObjects (`keda-hpa-<name>`)."""
    folder = K8S / "components" / "platform" / "autoscaling"
    scaled = frozenset(
        d["metadata"]["name"] for d in manifests(folder / "scaled-objects.yaml") if d["kind"] == "ScaledObject"
    )
    hpas = {d["metadata"]["name"] for d in manifests(folder / "horizontal-pod-autoscalers.yaml")}
    return frozenset(hpas | {f"keda-hpa-{name}" for name in scaled}), scaled


def command_blocks(text: str) -> list[str]:
    """Units a statement about an environment covers: each line of a fenced block (with its comment), each list
    item or table row, each paragraph of prose."""
    blocks: list[str] = []
    current: list[str] = []
    fenced = False

    def close() -> None:
        if current:
            blocks.append("\n".join(current))
            current.clear()

    for line in text.splitlines():
        if FENCE.match(line):
            close()
            fenced = not fenced
        elif fenced:
            blocks.append(line)
        elif not line.strip():
            close()
        else:
            if LIST_ITEM.match(line):
                close()
            current.append(line)
    close()
    return blocks


def deployment_commands(text: str) -> list[str]:
    """Commands on `deployment/<service>` for a service that runs as a Rollout, outside a block that says it is for
    an environment of plain Deployments (dev)."""
    names = "|".join(sorted(rollout_services()))
    verbs = r"restart|undo|logs|exec|scale|status|pause|resume|history|describe|get|edit|patch|port-forward|set\s+\w+"
    command = re.compile(
        rf"\b(?:deployments?|deploy)(?:\.apps)?/({names})\b|\b(?:{verbs})\s+(?:deployments?|deploy)\s+({names})\b"
    )
    return [
        match.group(0)
        for block in command_blocks(text)
        if not PLAIN_DEPLOYMENTS.search(block)
        for match in command.finditer(block)
    ]


def scale_commands(text: str) -> list[str]:
    """`kubectl scale` of a service: every environment autoscales every service, and its autoscaler undoes a manual
    scale within seconds; the bounds are what to change. Only where the same step removes the autoscaler first
    (`delete hpa`, as the disaster-recovery runbook's stop-writes step does) is a scale command sound."""
    services = "|".join(sorted(rollout_services()))
    command = re.compile(rf"\b(?:kubectl|k)\b[^`\n]*?\bscale\b[^`\n]*?\b({services})\b")
    return [
        match.group(0)
        for block in command_blocks(text)
        if "delete hpa" not in block
        for match in command.finditer(block)
    ]


def unknown_autoscaler_or_rollout_names(text: str) -> set[str]:
    """`hpa <name>`, `scaledobject <name>` and `kubectl argo rollouts <verb> <name>` naming nothing declared."""
    hpas, scaled = autoscaler_names()
    unknown = set()
    for kind, name in re.findall(r"\b(hpa|scaledobjects?)(?:/|\s+)([a-z][a-z0-9-]*)\b", text):
        if name not in (hpas if kind == "hpa" else scaled):
            unknown.add(f"{kind} {name}")
    rollouts = re.compile(
        r"(?:kubectl argo rollouts(?:\s+-n\s+\S+)?|\bkar)\s+([a-z][a-z-]*)\s+(?:rollouts?[ /])?([a-z<][\w<>-]*)"
    )
    for verb, name in rollouts.findall(text):
        if verb not in {"list", "version", "dashboard", "lint", "create"} and name not in {
            *rollout_services(),
            "<service>",
        }:
            unknown.add(f"rollouts {verb} {name}")
    return unknown


def test_no_deployment_commands_for_services_that_run_as_rollouts() -> None:
    assert {"gateway", "embed", "retrieve"} <= rollout_services()
    found = [f"{doc.name}: {hit}" for doc in sorted(DOCS.glob("*.md")) for hit in deployment_commands(doc.read_text())]
    assert found == []


def test_deployment_command_check_allows_dev_and_the_rollout_forms() -> None:
    assert deployment_commands("Restart it (`k rollout restart deployment/embed`).") == ["deployment/embed"]
    assert deployment_commands("k logs deploy/gateway --since=5m") == ["deploy/gateway"]
    assert deployment_commands("`kubectl rollout undo deployment gateway`") == ["undo deployment gateway"]
    assert deployment_commands("In dev (plain Deployments): `k rollout restart deployment/embed`.") == []
    assert deployment_commands("```bash\nk rollout restart deployment/embed   # dev\n```") == []
    assert deployment_commands("`kar restart embed`; `k logs -l app.kubernetes.io/name=embed`") == []
    assert deployment_commands("`kubectl rollout restart deployment/redis`") == []  # no Rollout: a plain Deployment
    assert deployment_commands("- in dev: `deployment/embed`\n- in prod: `deployment/embed`") == ["deployment/embed"]


def test_no_manual_scaling_of_autoscaled_services() -> None:
    found = [f"{doc.name}: {hit}" for doc in sorted(DOCS.glob("*.md")) for hit in scale_commands(doc.read_text())]
    assert found == []
    assert scale_commands("`k scale deployment/retrieve --replicas=4`") != []
    assert scale_commands("`kubectl -n ragstream scale rollout embed --replicas=3`") != []
    assert scale_commands("raise `minReplicaCount` of the ScaledObject") == []
    assert scale_commands("`k delete hpa connectors`, then `k scale rollout/connectors --replicas=0`") == []


def test_autoscalers_and_rollouts_named_in_the_documents_exist() -> None:
    hpas, scaled = autoscaler_names()
    assert {"ingest", "embed", "retrieve"} <= scaled and {"gateway", "keda-hpa-embed"} <= hpas
    assert unknown_autoscaler_or_rollout_names(operations_text()) == set()
    assert unknown_autoscaler_or_rollout_names("`k patch scaledobject retrieve`, `k get hpa keda-hpa-embed`") == set()
    assert unknown_autoscaler_or_rollout_names("`k describe hpa embed`") == {
        "hpa embed"
    }  # KEDA names it keda-hpa-embed
    assert unknown_autoscaler_or_rollout_names("`kar promote gatway`") == {"rollouts promote gatway"}
    assert unknown_autoscaler_or_rollout_names("alias kar='kubectl argo rollouts -n ragstream'") == set()
    assert unknown_autoscaler_or_rollout_names("kubectl argo rollouts -n ragstream get rollout gateway") == set()
    assert unknown_autoscaler_or_rollout_names("`kar retry rollout embed`, `kar restart <service>`") == set()
