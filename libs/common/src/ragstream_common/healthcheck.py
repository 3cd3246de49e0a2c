"""`python -m ragstream_common.healthcheck <service>`: exit 0 when the service's gRPC health says SERVING.

The container HEALTHCHECK of every image. The port is the service's own setting (`<SERVICE>_GRPC_PORT` or its
default), read through the service's settings class, so a port changed at run time is still the one asked;
the probe dials TLS when GRPC_TLS_CA_FILE is set, as the compose TLS override does.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys

from ragstream_common.config import ServiceSettings
from ragstream_common.grpc_server import GrpcTlsSettings, check_health
from ragstream_common.registry import service_spec


def settings_class(service: str) -> type[ServiceSettings]:
    """The ServiceSettings subclass in `ragstream_<service>.config`; `service` must be registered (registry.py)."""
    try:
        package = service_spec(service).package
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    module = importlib.import_module(f"{package}.config")
    found = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise SystemExit(f"{module.__name__} has {len(found)} settings classes, expected one")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        raise SystemExit("usage: python -m ragstream_common.healthcheck <service>")
    (service,) = args
    settings = settings_class(service)()
    try:
        # Over TLS when the service serves TLS (GRPC_TLS_CA_FILE, GRPC_TLS_SERVER_NAME for the 127.0.0.1 dial).
        target, tls = f"127.0.0.1:{settings.grpc_port}", GrpcTlsSettings()
        status = asyncio.run(check_health(target, timeout_s=3.0, tls=tls))
    except Exception as exc:  # unreachable, refused, timed out: all mean unhealthy
        print(f"{service}: {exc!r}", file=sys.stderr)
        return 1
    print(f"{service}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
