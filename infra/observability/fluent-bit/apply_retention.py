"""Apply the OpenSearch ISM retention policies of opensearch-retention.json (the compose one-shot
`opensearch-retention`, before Fluent Bit writes its first index; rerun it after editing the file).

    python apply_retention.py --url http://opensearch:9200 --policies opensearch-retention.json

Each policy is created, or updated in place when it exists (ISM wants the stored version's seq_no and primary_term
for that), then attached to the indices its ism_template names that already exist: a template only reaches indices
created after it. Standard library only: it runs in any image with Python.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

Send = Callable[[str, str, dict[str, Any] | None], tuple[int, dict[str, Any]]]


def policies(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Policy id -> PUT body; keys starting with `_` are comments."""
    return {name: body for name, body in document.items() if not name.startswith("_")}


def http_sender(base_url: str, timeout_s: float = 30.0) -> Send:
    def send(method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    return send


def apply_policy(send: Send, policy_id: str, body: dict[str, Any]) -> str:
    """Create or update one policy, then attach it to existing matching indices; returns what it did."""
    path = f"/_plugins/_ism/policies/{policy_id}"
    status, stored = send("GET", path, None)
    if status == 404:
        status, answer = send("PUT", path, body)
        action = "created"
    elif status == 200:
        version = f"?if_seq_no={stored['_seq_no']}&if_primary_term={stored['_primary_term']}"
        status, answer = send("PUT", path + version, body)
        action = "updated"
    else:
        raise RuntimeError(f"GET {path}: HTTP {status} {stored}")
    if status not in (200, 201):
        raise RuntimeError(f"PUT {path}: HTTP {status} {answer}")
    for template in body["policy"].get("ism_template", []):
        for pattern in template["index_patterns"]:
            # Indices already managed come back as failures in the body, no index at all as 404: both are fine.
            status, answer = send("POST", f"/_plugins/_ism/add/{pattern}", {"policy_id": policy_id})
            if status not in (200, 404):
                raise RuntimeError(f"attaching {policy_id} to {pattern}: HTTP {status} {answer}")
    return action


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://opensearch:9200")
    parser.add_argument("--policies", type=Path, default=Path(__file__).with_name("opensearch-retention.json"))
    args = parser.parse_args(argv)
    send = http_sender(args.url)
    for policy_id, body in policies(json.loads(args.policies.read_text())).items():
        print(f"{policy_id}: {apply_policy(send, policy_id, body)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
