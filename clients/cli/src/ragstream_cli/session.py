"""What every command shares: the global flags, resolved into an `Api` on first use, and the exit codes.

Exit codes: 0 done; 1 the gateway refused or failed (a problem), or the work itself failed (a document not
indexed, a gateway not ready); 2 the command line or configuration is wrong; 130 interrupted."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx
import typer
from typer.core import TyperGroup

from ragstream_cli.client import Api, ApiError
from ragstream_cli.config import ConfigError, config_path, load_profiles, resolve
from ragstream_cli.render import errors, print_problem

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


@dataclass
class Session:
    """The global flags; `api()` resolves them against the environment and the config file."""

    url: str | None = None
    api_key: str | None = None
    admin_token: str | None = None
    profile: str | None = None
    transport: httpx.BaseTransport | None = None  # unit tests stand in for HTTP here
    _api: Api | None = field(default=None, repr=False)

    def api(self) -> Api:
        if self._api is None:
            flags = {"url": self.url, "api_key": self.api_key, "admin_token": self.admin_token}
            settings = resolve(flags, os.environ, load_profiles(config_path()), self.profile)
            self._api = Api(settings, transport=self.transport)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def session(ctx: typer.Context) -> Session:
    obj = ctx.find_root().obj
    if not isinstance(obj, Session):  # a command invoked without the root callback (tests of one command)
        obj = ctx.find_root().obj = Session()
    return obj


def api(ctx: typer.Context) -> Api:
    return session(ctx).api()


class HandledGroup(TyperGroup):
    """The root group: API problems and configuration errors end the command as one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context, which it does not export
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            print_problem(exc)
            raise typer.Exit(EXIT_FAILED) from None
        except ConfigError as exc:
            errors.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            errors.print("interrupted", style="yellow")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            if isinstance(ctx.obj, Session):
                ctx.obj.close()


def pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """`k=v` options as a dict; anything else is a usage error."""
    result: dict[str, str] = {}
    for value in values or []:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {value!r}", param_hint=option)
        result[key] = item
    return result
