"""How a provider's item becomes a document: its id, its metadata and the fingerprint that says "unchanged"."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from ragstream_connectors.providers.base import ItemChange

MAX_DOCUMENT_ID_CHARS = 128
_PLAIN_ITEM_ID = re.compile(r"[A-Za-z0-9._:-]+")
# ItemChange.extra keys with this prefix are the item's own metadata (generic webhooks' `data.metadata`),
# merged into the event's metadata; other extra keys are facts only the provider's download needs.
METADATA_PREFIX = "metadata:"
# The keys the worker sets itself; an item's own metadata never overrides them.
RESERVED_METADATA = frozenset(
    {"connector_id", "provider", "item_id", "source_uri", "path", "author", "modified_at", "web_url", "permissions"}
)


def document_id_for(connector_id: str, item_id: str) -> str:
    """`<connector_id>:<item id>`, or `<connector_id>:h-<40 hex of sha256(item id)>` when the item id has other
    characters or the result would be longer than 128: stable, and unique per connector either way."""
    plain = f"{connector_id}:{item_id}"
    if _PLAIN_ITEM_ID.fullmatch(item_id) and len(plain) <= MAX_DOCUMENT_ID_CHARS:
        return plain
    return f"{connector_id}:h-{hashlib.sha256(item_id.encode('utf-8')).hexdigest()[:40]}"


def event_metadata(connector_id: str, provider: str, item: ItemChange) -> dict[str, str]:
    """The metadata a DocumentReceived/Updated carries: where the item came from, who may read it, and the
    item's own metadata (a generic webhook's)."""
    metadata = {
        key[len(METADATA_PREFIX) :]: value
        for key, value in item.extra.items()
        if key.startswith(METADATA_PREFIX) and key[len(METADATA_PREFIX) :] not in RESERVED_METADATA
    }
    facts = {
        "source_uri": item.source_uri,
        "path": item.path,
        "author": item.author,
        "modified_at": item.modified_at.isoformat() if item.modified_at else "",
        "web_url": item.web_url,
    }
    metadata.update({key: value for key, value in facts.items() if value})
    metadata.update(
        connector_id=connector_id,
        provider=provider,
        item_id=item.item_id,
        permissions=json.dumps(list(item.permissions)),
    )
    return metadata


def metadata_digest(item: ItemChange) -> str:
    """A short hash of what a new version must follow besides content and title: path, link, permissions and
    the item's own metadata. A move or a sharing change re-versions the document without new content."""
    own = sorted((k, v) for k, v in item.extra.items() if k.startswith(METADATA_PREFIX))
    facts = [item.path, item.web_url, sorted(item.permissions), own]
    return hashlib.sha256(json.dumps(facts).encode("utf-8")).hexdigest()[:16]


def stored_tag(item: ItemChange) -> str:
    """What `connector_items.version_tag` keeps: the provider's change marker plus the metadata digest."""
    return f"{item.version_tag}#m{metadata_digest(item)}"


def metadata_unchanged(stored: str, item: ItemChange) -> bool:
    return stored.rpartition("#m")[2] == metadata_digest(item)


def last_copy_of_each(changes: Iterable[ItemChange]) -> list[ItemChange]:
    """One change per item, the last one reported, in the order of those last copies (Graph's delta may list
    an item more than once: only its last state counts)."""
    last: dict[str, ItemChange] = {}
    for change in changes:
        last.pop(change.item_id, None)
        last[change.item_id] = change
    return list(last.values())


def metadata_from(values: Mapping[str, str]) -> dict[str, str]:
    """ItemChange.extra entries carrying an item's own metadata (the inverse of the prefix in event_metadata)."""
    return {f"{METADATA_PREFIX}{key}": value for key, value in values.items()}
