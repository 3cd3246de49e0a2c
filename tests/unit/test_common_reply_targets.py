"""The reply allowlist: which `reply_to` addresses a worker may dial (everything else is dropped)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ragstream_common.reply_targets import ReplyTargets, ReplyTargetSettings, parse_target

pytestmark = pytest.mark.unit

ALLOWED = ["10.20.0.0/16", "127.0.0.1", "gateway:50050", "[fd00::5]:50050", "reply-host", "*.gateway-reply.rs.svc"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.20.3.4:50050", True),
        ("10.21.3.4:50050", False),
        ("127.0.0.1:41234", True),
        ("127.0.0.2:41234", False),
        ("[::ffff:127.0.0.1]:41234", True),
        ("gateway:50050", True),
        ("GATEWAY:50050", True),
        ("gateway:50051", False),
        ("[fd00::5]:50050", True),
        ("[fd00::5]:50051", False),
        ("reply-host:1", True),
        ("gw-0.gateway-reply.rs.svc:50050", True),
        ("gateway-reply.rs.svc:50050", False),
        ("evil.com:50050", False),
        ("gateway.evil.com:50050", False),
        ("10.20.3.4", False),
        ("dns:///gateway:50050", False),
        ("unix:/tmp/socket", False),
        ("ipv4:10.20.3.4:50050,1.2.3.4:50050", False),
        ("gateway:0", False),
        ("gateway:99999", False),
        ("", False),
        ("169.254.169.254:80", False),
    ],
)
def test_only_listed_targets_are_allowed(address: str, allowed: bool) -> None:
    assert ReplyTargets(ALLOWED).allows(address) is allowed


def test_nothing_is_allowed_by_default() -> None:
    targets = ReplyTargetSettings().targets()
    assert not targets and not targets.allows("127.0.0.1:50050")


def test_settings_split_the_environment_and_refuse_a_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLY_ALLOWED_TARGETS", " 127.0.0.1 , gateway:50050 ,")
    assert ReplyTargetSettings().allowed_targets == ["127.0.0.1", "gateway:50050"]
    for bad in ("http://gateway", "gate way", "*.", "10.0.0.0/33"):
        monkeypatch.setenv("REPLY_ALLOWED_TARGETS", bad)
        with pytest.raises(ValidationError):
            ReplyTargetSettings()


def test_targets_parse_to_host_and_port() -> None:
    assert parse_target("Gateway:50050") is not None and parse_target("Gateway:50050").host == "gateway"  # type: ignore[union-attr]
    assert parse_target("[::1]:5") is not None and parse_target("[::1]:5").host == "::1"  # type: ignore[union-attr]
    assert parse_target("::1:5") is None and parse_target("gateway") is None
