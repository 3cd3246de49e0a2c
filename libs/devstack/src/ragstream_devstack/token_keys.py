"""Token signing keys of the local services (service-to-service JWTs, ragstream_common.service_tokens).

Each minting service (MINTING_SERVICES) has its own Ed25519 keys in the local credentials: `token-key-<kid>`
(the PEM), `token-key-ids-<service>` (its trusted key ids, oldest first) and `token-signing-kid-<service>`
(the one it signs with). Every service trusts the public keys of all of them (one JWKS, TOKEN_TRUSTED_KEYS);
only a minter gets its own private key. The first key of a service is made on first use.

Rotation (`python -m ragstream_devstack.token_keys`), with a restart of the services after each step:
  add <service>          a second key, trusted everywhere but not yet used to sign
  use <service> <kid>    sign with it (tokens under the old key stay valid until they expire, TOKEN_TTL_S)
  retire <service> <kid> after that TTL: drop the old key from the JWKS
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from ragstream_common.service_tokens import generate_signing_key, jwks_json, public_jwk

from ragstream_devstack.credentials import LocalCredentials

MINTING_SERVICES = ("gateway", "retrieve", "generate")
# Every local gateway advertises its ReplyService on loopback (system.py).
LOCAL_REPLY_TARGETS = "127.0.0.1"


def token_identity_env(service: str, *, credentials: LocalCredentials) -> dict[str, str]:
    """TOKEN_* of `service` (its signing key only if it mints) and the local reply allowlist."""
    env = {
        "TOKEN_TRUSTED_KEYS": trusted_jwks(credentials),
        "TOKEN_ISSUER": service,
        "REPLY_ALLOWED_TARGETS": LOCAL_REPLY_TARGETS,
    }
    if service in MINTING_SERVICES:
        kid = signing_key_id(service, credentials=credentials)
        env["TOKEN_SIGNING_KEY_ID"] = kid
        env["TOKEN_SIGNING_KEY"] = _private_key(kid, credentials)
    return env


def trusted_jwks(credentials: LocalCredentials) -> str:
    """The JWKS of every minting service's trusted public keys."""
    keys = [
        public_jwk(_private_key(kid, credentials), kid)
        for service in MINTING_SERVICES
        for kid in key_ids(service, credentials=credentials)
    ]
    return jwks_json(keys)


def key_ids(service: str, *, credentials: LocalCredentials) -> list[str]:
    """The service's trusted key ids, oldest first (its first key is made here if it has none)."""
    _require_minter(service)
    stored = credentials.stored(f"token-key-ids-{service}")
    if stored:
        return stored.split(",")
    kid = _new_key(service, credentials)
    credentials.store(f"token-key-ids-{service}", kid)
    credentials.store(f"token-signing-kid-{service}", kid)
    return [kid]


def signing_key_id(service: str, *, credentials: LocalCredentials) -> str:
    key_ids(service, credentials=credentials)
    kid = credentials.stored(f"token-signing-kid-{service}")
    assert kid is not None  # key_ids stores it with the first key
    return kid


def add_signing_key(service: str, *, credentials: LocalCredentials) -> str:
    """Step 1 of a rotation: a new key, trusted by everyone from their next start, not used to sign yet."""
    kids = key_ids(service, credentials=credentials)
    kid = _new_key(service, credentials)
    credentials.store(f"token-key-ids-{service}", ",".join([*kids, kid]))
    return kid


def use_signing_key(service: str, kid: str, *, credentials: LocalCredentials) -> None:
    """Step 2: sign with `kid` (already trusted everywhere, see add_signing_key)."""
    if kid not in key_ids(service, credentials=credentials):
        raise ValueError(f"{kid!r} is not a key of {service}")
    credentials.store(f"token-signing-kid-{service}", kid)


def retire_signing_key(service: str, kid: str, *, credentials: LocalCredentials) -> None:
    """Step 3: trust `kid` no more (it must not be the signing key)."""
    kids = key_ids(service, credentials=credentials)
    if kid == signing_key_id(service, credentials=credentials):
        raise ValueError(f"{kid!r} still signs {service}'s tokens: switch first (use_signing_key)")
    if kid not in kids:
        raise ValueError(f"{kid!r} is not a key of {service}")
    credentials.store(f"token-key-ids-{service}", ",".join(k for k in kids if k != kid))


def _new_key(service: str, credentials: LocalCredentials) -> str:
    kid = f"{service}-{secrets.token_hex(4)}"
    credentials.store(f"token-key-{kid}", generate_signing_key())
    return kid


def _private_key(kid: str, credentials: LocalCredentials) -> str:
    pem = credentials.stored(f"token-key-{kid}")
    if pem is None:
        raise ValueError(f"no stored token key {kid!r}")
    return pem + "\n"


def _require_minter(service: str) -> None:
    if service not in MINTING_SERVICES:
        raise ValueError(f"{service} mints no tokens; minting services: {', '.join(MINTING_SERVICES)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragstream_devstack.token_keys", description=__doc__)
    parser.add_argument("--credentials", type=Path, default=Path("var/credentials"), help="default: var/credentials")
    parser.add_argument("action", choices=["list", "add", "use", "retire"])
    parser.add_argument("service", choices=MINTING_SERVICES)
    parser.add_argument("kid", nargs="?", default="")
    args = parser.parse_args(argv)
    credentials = LocalCredentials(args.credentials)
    if args.action in ("use", "retire") and not args.kid:
        parser.error(f"{args.action} needs the key id")
    if args.action == "add":
        print(add_signing_key(args.service, credentials=credentials))
    elif args.action == "use":
        use_signing_key(args.service, args.kid, credentials=credentials)
    elif args.action == "retire":
        retire_signing_key(args.service, args.kid, credentials=credentials)
    signing = signing_key_id(args.service, credentials=credentials)
    for kid in key_ids(args.service, credentials=credentials):
        print(f"{kid}{'  (signing)' if kid == signing else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
