"""Moved: the query routes live in `ragstream_gateway.routes.query` with every other HTTP router.

Kept only so that existing imports (`from ragstream_gateway.query import routes`) keep working; import
`ragstream_gateway.routes.query` instead.
"""

from ragstream_gateway.routes.query import router

__all__ = ["router"]
