"""Microsoft Graph wire format -> provider types: driveItems, permissions and change notifications.

Pure functions (no I/O) so the mapping is tested on its own; graph.py does the calls. References:
- driveItem (https://learn.microsoft.com/graph/api/resources/driveitem): `file`/`folder`/`root`/`package`
  facets, `deleted` facet on removed items, `cTag` (content tag: unchanged by a rename or move), `eTag` (whole
  item: changes on rename and move too), `file.hashes.quickXorHash`.
- delta (https://learn.microsoft.com/graph/api/driveitem-delta, "Remarks"): the same item may appear more than
  once, the last occurrence wins; `parentReference.path` is never set; OneDrive for Business and SharePoint omit
  `cTag` on create/modify and `cTag` and `name` on delete.
- itemReference.path (https://learn.microsoft.com/graph/api/resources/itemreference): a percent-encoded API
  path such as `/drives/{id}/root:/Documents/my%20file.docx`; everything up to the first `:` is the drive.
- permission (https://learn.microsoft.com/graph/api/resources/permission): grantees in `grantedToV2` and
  `grantedToIdentitiesV2` (sharePointIdentitySet: user, group, siteUser, siteGroup), sharing links in `link`.
- notifications (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks and
  .../change-notifications-lifecycle-events): `{"value": [...]}` of change notifications (`changeType`) and
  lifecycle notifications (`lifecycleEvent`: reauthorizationRequired, subscriptionRemoved, missed).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from ragstream_common.logs import get_logger

from ragstream_connectors.providers.base import ItemChange, NotificationPlan, ProviderError

log = get_logger(__name__)

# What a version tag is made of, so tags from different sources never collide.
_TAG_SOURCES = (("cTag", "ctag:"), ("quickXorHash", "qxh:"), ("eTag", "etag:"))
_IDENTITY_KINDS = (("user", "user"), ("siteUser", "user"), ("group", "group"), ("siteGroup", "sitegroup"))


def latest_occurrences(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One entry per item id, the last occurrence winning and taking the last position (delta "Remarks")."""
    latest: dict[str, Mapping[str, Any]] = {}
    for item in items:
        item_id = str(item.get("id", ""))
        if item_id:
            latest.pop(item_id, None)
            latest[item_id] = item
    return list(latest.values())


def version_tag(item: Mapping[str, Any]) -> str:
    """The content's change marker: `cTag` where the API sends it; SharePoint's delta omits it, so then the
    content hash (quickXorHash), and only for items with neither the `eTag` (which a rename changes too)."""
    hashes = (item.get("file") or {}).get("hashes") or {}
    for key, prefix in _TAG_SOURCES:
        value = hashes.get(key) if key == "quickXorHash" else item.get(key)
        if value:
            return f"{prefix}{value}"
    return ""


def author_of(item: Mapping[str, Any]) -> str:
    """Who created the item (else who last changed it): display name, else email."""
    for key in ("createdBy", "lastModifiedBy"):
        user = (item.get(key) or {}).get("user") or {}
        name = user.get("displayName") or user.get("email")
        if name:
            return str(name)
    return ""


def drive_path(reference_path: str) -> str:
    """`/drives/{id}/root:/A/B%20C` -> `/A/B C` (the path inside the drive; "" for the root itself)."""
    _, colon, rest = reference_path.partition(":")
    return unquote(rest) if colon else ""


def join_path(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if name else folder


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def is_root(item: Mapping[str, Any]) -> bool:
    return "root" in item


def parent_id(item: Mapping[str, Any]) -> str:
    return str((item.get("parentReference") or {}).get("id") or "")


def change_from_item(
    item: Mapping[str, Any],
    *,
    drive_id: str,
    source_uri: str,
    path: str = "",
    permissions: tuple[str, ...] = (),
) -> ItemChange:
    """A driveItem as an ItemChange: a `deleted` facet is a deletion; folders, the root and packages (OneNote
    notebooks) are tracked but never downloaded."""
    item_id = str(item["id"])
    reference = item.get("parentReference") or {}
    extra = {"drive_id": str(reference.get("driveId") or drive_id)}
    if "deleted" in item:
        return ItemChange(
            item_id,
            deleted=True,
            name=str(item.get("name", "")),
            is_file="folder" not in item,
            source_uri=source_uri,
            extra=extra,
        )
    file_facet = item.get("file")
    return ItemChange(
        item_id,
        name=str(item.get("name", "")),
        path=path,
        author=author_of(item),
        modified_at=parse_time(item.get("lastModifiedDateTime")),
        web_url=str(item.get("webUrl", "")),
        version_tag=version_tag(item),
        content_type=str((file_facet or {}).get("mimeType", "")),
        size_bytes=int(item["size"]) if isinstance(item.get("size"), int) else None,
        permissions=permissions,
        source_uri=source_uri,
        is_file=file_facet is not None and not is_root(item),
        extra=extra,
    )


def principals(permissions: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Who a permission collection lets read the item: `user:<email or id>`, `group:<email or id>`,
    `sitegroup:<name>`, and `link:<scope>` for anonymous or organization-wide sharing links."""
    found: set[str] = set()
    for permission in permissions:
        identity_sets = [permission.get("grantedToV2") or {}, *(permission.get("grantedToIdentitiesV2") or [])]
        for identity_set in identity_sets:
            found.update(_identity_principals(identity_set))
        scope = (permission.get("link") or {}).get("scope")
        if scope in ("anonymous", "organization"):
            found.add(f"link:{scope}")
    return tuple(sorted(found))


def _identity_principals(identity_set: Mapping[str, Any]) -> Iterable[str]:
    for key, kind in _IDENTITY_KINDS:
        identity = identity_set.get(key) or {}
        if kind == "sitegroup":  # SharePoint groups are known by name; their ids are small site-local numbers
            name = identity.get("displayName") or identity.get("id")
        else:
            name = identity.get("email") or identity.get("loginName") or identity.get("id")
        if name:
            yield f"{kind}:{name}"


def plan_from_notifications(payload: bytes, client_state: str) -> NotificationPlan:
    """What a notification POST asks for. Entries whose clientState does not match are ignored (the gateway
    has refused such requests already; this is the same check once more, in constant time)."""
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise ProviderError(f"notification body is not JSON: {exc}", transient=False) from exc
    entries = body.get("value") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise ProviderError("notification body has no `value` array", transient=False)
    sync = renew = resubscribe = False
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if not hmac.compare_digest(str(entry.get("clientState", "")).encode(), client_state.encode()):
            log.warning("graph notification with a wrong clientState ignored", subscription=entry.get("subscriptionId"))
            continue
        event = entry.get("lifecycleEvent")
        if event == "reauthorizationRequired":
            renew = True
        elif event == "subscriptionRemoved":
            resubscribe = True
        elif event == "missed" or (event is None and entry.get("changeType")):
            sync = True
    return NotificationPlan(sync=sync, renew=renew, resubscribe=resubscribe)
