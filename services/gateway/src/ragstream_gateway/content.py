"""Which uploaded files the gateway accepts: the shared format rules, refused as 415 problems.

The rules themselves (declared type, filename extension, sniffed bytes) live in `ragstream_common.formats`,
which ingest applies too: an upload accepted here is never refused by ingest as unsupported.
"""

from __future__ import annotations

from ragstream_common.formats import UnsupportedFormat, resolve_format

from ragstream_gateway.problems import Problem


def resolve_upload_type(content_type: str | None, filename: str | None, data: bytes) -> str:
    """The canonical MIME type of an uploaded file, or a 415 problem saying why it is refused."""
    try:
        return resolve_format(content_type, filename, data)
    except UnsupportedFormat as exc:
        raise Problem(415, str(exc), slug="unsupported-content") from None
