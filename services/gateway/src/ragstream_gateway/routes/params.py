"""Path parameters shared by the admin routers, declared once so their patterns (and the OpenAPI) agree."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from ragstream_gateway.models import TENANT_ID_PATTERN

TenantIdPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
# Key ids are `key_<hex>`; the pattern also keeps NUL and other bytes Postgres cannot take out of lookups.
KeyIdPath = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
