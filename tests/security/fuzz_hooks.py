"""schemathesis hooks for the in-process run (loaded by the command line through `hooks` in its config).

No workers answer questions in this tier, so a question lasts its whole deadline, and schemathesis picks deadlines
up to the documented maximum (120 s, the coverage phase's boundary values included). Before each call a valid
`timeout_ms` is lowered to QUESTION_DEADLINE_CAP_MS, which keeps it valid; an invalid one (negative data) is sent
unchanged, to be refused with 422.
"""

from __future__ import annotations

from typing import Any

import schemathesis

QUESTION_DEADLINE_CAP_MS = 200


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    deadline = body.get("timeout_ms")
    # JSON Schema integers include 68722.0, and the gateway takes it as 68722.
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not float(deadline).is_integer():
        return
    bounds = _deadline_bounds(case)
    if bounds is not None and bounds[0] <= deadline <= bounds[1]:
        case.body = {**body, "timeout_ms": min(int(deadline), QUESTION_DEADLINE_CAP_MS)}


def _deadline_bounds(case: schemathesis.Case[Any]) -> tuple[int, int] | None:
    """`timeout_ms`'s minimum and maximum in the operation's JSON body schema."""
    raw = case.operation.schema.raw_schema
    content = case.operation.definition.raw.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema", {})
    while "$ref" in schema:
        schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    prop = schema.get("properties", {}).get("timeout_ms", {})
    bounded = [p for p in (prop, *prop.get("anyOf", [])) if "maximum" in p]
    if not bounded:
        return None
    return int(bounded[0].get("minimum", 1)), int(bounded[0]["maximum"])
