"""Signed licences for commercial integrations: JWTs signed with EdDSA (Ed25519).

A licence is a JWT (RFC 7519) whose claims are `plugin` (the vendor, as in
`spec.vendor`), `namespace` (the tenant), `exp` and `iat`, signed with an
Ed25519 key (`alg: EdDSA`, RFC 8037) through PyJWT. The operator trusts the
public keys in its settings (base64 of the raw 32 bytes); vendors sign with
`switchboard license sign`. The grace period is PyJWT's leeway: a licence past
`exp` but within the leeway still verifies, and is reported as in grace.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Loaded where a signature is checked or made: the operator process carries
    # cryptography (about 9 MB) only once it checks a licence.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

ALGORITHM = "EdDSA"


class Verdict(StrEnum):
    VALID = "valid"
    IN_GRACE = "in_grace"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True)
class LicenseCheck:
    verdict: Verdict
    message: str
    expires: datetime.datetime | None = None

    @property
    def allows_running(self) -> bool:
        return self.verdict in (Verdict.VALID, Verdict.IN_GRACE)


def sign(
    private_key: Ed25519PrivateKey,
    plugin: str,
    namespace: str,
    expires: datetime.datetime,
    now: datetime.datetime | None = None,
) -> str:
    """A licence for `plugin` in `namespace`, valid until `expires`."""
    import jwt

    issued = now or datetime.datetime.now(datetime.UTC)
    claims = {"plugin": plugin, "namespace": namespace, "exp": expires, "iat": issued}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """The base64 public key to put in the operator's `license_public_keys`."""
    raw = private_key.public_key().public_bytes_raw()
    return base64.b64encode(raw).decode()


def _public_key(text: str) -> Ed25519PublicKey | None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        return None


def _expiry(claims: dict[str, Any]) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(claims["exp"]), datetime.UTC)


def verify(
    token: str,
    *,
    plugin: str,
    namespace: str,
    public_keys: list[str],
    grace: datetime.timedelta,
    now: datetime.datetime | None = None,
) -> LicenseCheck:
    """Check a licence token's signature, subject and expiry."""
    import jwt

    now = now or datetime.datetime.now(datetime.UTC)
    token = token.strip()
    try:
        jwt.get_unverified_header(token)
    except jwt.DecodeError:
        return LicenseCheck(Verdict.INVALID, "the licence is not a Switchboard licence token")
    claims: dict[str, Any] | None = None
    expired_by: datetime.datetime | None = None
    for key in filter(None, map(_public_key, public_keys)):
        try:
            claims = _decode(token, key, grace, now)
            break
        except jwt.ExpiredSignatureError:
            # The signature is good (PyJWT checks it first); only the time is up.
            expired_by = _expiry(_decode(token, key, grace, now, verify_exp=False))
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            return LicenseCheck(Verdict.INVALID, "the licence is not a Switchboard licence token")
    if expired_by is not None:
        return LicenseCheck(
            Verdict.EXPIRED,
            f"the licence expired at {expired_by.isoformat()} and its grace period has ended",
            expired_by,
        )
    if claims is None:
        return LicenseCheck(
            Verdict.INVALID, "the licence signature matches none of the trusted public keys"
        )
    if claims.get("plugin") != plugin or claims.get("namespace") != namespace:
        return LicenseCheck(
            Verdict.INVALID,
            f"the licence is for plugin {claims.get('plugin')!r} in namespace "
            f"{claims.get('namespace')!r}, not {plugin!r} in {namespace!r}",
        )
    expires = _expiry(claims)
    if now <= expires:
        return LicenseCheck(Verdict.VALID, f"licensed until {expires.isoformat()}", expires)
    return LicenseCheck(
        Verdict.IN_GRACE,
        f"the licence expired at {expires.isoformat()}; the integration keeps running "
        f"until {(expires + grace).isoformat()}: renew it",
        expires,
    )


def _decode(
    token: str,
    key: Ed25519PublicKey,
    grace: datetime.timedelta,
    now: datetime.datetime,
    *,
    verify_exp: bool = True,
) -> dict[str, Any]:
    import jwt

    # PyJWT checks `exp` against the wall clock: expired when exp <= wall - leeway.
    # A leeway of grace + (wall - now) makes that exp <= now - grace, the grace
    # period measured from `now` (tests, and `verify(now=)`).
    shift = (datetime.datetime.now(datetime.UTC) - now).total_seconds()
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[ALGORITHM],
        leeway=grace.total_seconds() + shift,
        options={"require": ["exp", "plugin", "namespace"], "verify_exp": verify_exp},
    )
    return claims
