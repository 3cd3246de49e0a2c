"""The Kafka ACLs of kafka/acls.py as the lists MSK IAM policies need: infra/terraform/kafka-access.json.

On MSK the services authenticate with IAM, which authorizes by policy, not by Kafka ACL (docs/security.md).
Terraform (infra/terraform/iam.tf) builds one policy per service role from this file: ReadData, WriteData and
DescribeTopic on exactly these topic ARNs, AlterGroup and DescribeGroup on these groups. Tenants' topics are
granted per tenant on Kafka; IAM matches them with `*` in place of the tenant id. A stream processor's own
internal topics (`stream_topics`, a prefixed ACL) become `<app id>-*`, which it may also create. `topics` lists
what the topic bootstrap (the `bootstrap` role) may create.

  python -m ragstream_devstack.kafka_iam          rewrite the file
  python -m ragstream_devstack.kafka_iam --check  exit 1 if it differs from the map (tests do the same)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ragstream_common.kafka.acls import (
    STREAM_APPS,
    TENANT_TOPIC_PREFIX,
    AclGrant,
    principal,
    service_grants,
    service_user,
    stream_topic_prefix,
)
from ragstream_common.kafka.tenant_topics import service_grants as tenant_service_grants
from ragstream_common.kafka.topics import ALL_TOPICS
from ragstream_common.registry import SERVICE_NAMES

ACCESS_FILE = Path("infra/terraform/kafka-access.json")
# Stands for any tenant while the per-tenant grants are rendered, then becomes IAM's `*`.
_SOME_TENANT = "TENANT"
_ACCESS_KEYS = {("topic", "read"): "read", ("topic", "write"): "write", ("topic", "describe"): "describe"}


def service_access(service: str) -> dict[str, list[str]]:
    """{"read", "write", "describe": topic names or `rag.tenant.*...` patterns, "groups": group ids,
    "stream_topics": the `<app id>-*` pattern of a stream processor's internal topics, or nothing}."""
    who = principal(service_user(service))
    grants = service_grants(service) + [g for g in tenant_service_grants(_SOME_TENANT) if g.principal == who]
    access: dict[str, set[str]] = {"read": set(), "write": set(), "describe": set(), "groups": set()}
    for grant in grants:
        access[_access_key(grant)].add(_iam_name(grant.name))
    app_id = STREAM_APPS.get(service)
    access["stream_topics"] = {f"{stream_topic_prefix(app_id)}*"} if app_id else set()
    return {key: sorted(names) for key, names in access.items()}


def access_document() -> dict[str, Any]:
    return {
        "comment": "Generated from ragstream_common/kafka/acls.py by `python -m ragstream_devstack.kafka_iam`.",
        "services": {name: service_access(name) for name in sorted(SERVICE_NAMES)},
        # What the topic bootstrap creates (and nothing else: tenants' topics are the provisioner's).
        "topics": sorted(spec.name for spec in ALL_TOPICS),
        "tenant_topics": f"{TENANT_TOPIC_PREFIX}*",
    }


def render() -> str:
    return json.dumps(access_document(), indent=2, sort_keys=True) + "\n"


def _access_key(grant: AclGrant) -> str:
    if grant.pattern != "literal":
        raise ValueError(f"a service grant must be literal to become an IAM resource: {grant}")
    if grant.resource_type == "group" and grant.operation == "read":
        return "groups"
    key = _ACCESS_KEYS.get((grant.resource_type, grant.operation))
    if key is None:
        raise ValueError(f"no IAM translation for {grant}")
    return key


def _iam_name(name: str) -> str:
    tenant_prefix = f"{TENANT_TOPIC_PREFIX}{_SOME_TENANT}."
    return f"{TENANT_TOPIC_PREFIX}*." + name.removeprefix(tenant_prefix) if name.startswith(tenant_prefix) else name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragstream_devstack.kafka_iam", description=__doc__)
    parser.add_argument("--file", type=Path, default=ACCESS_FILE, help=f"default: {ACCESS_FILE}")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.file.is_file() or args.file.read_text() != text:
            print(f"{args.file} is stale: run python -m ragstream_devstack.kafka_iam", file=sys.stderr)
            return 1
        return 0
    args.file.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
