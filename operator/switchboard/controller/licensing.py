"""Signed licences for commercial integrations.

A licence is `<payload>.<signature>`, both base64url without padding. The
payload is JSON `{"plugin": VENDOR, "namespace": TENANT, "expires": ISO-8601}`
and the signature is Ed25519 over the payload bytes. The operator trusts the
public keys in its settings; vendors sign with `switchboard license sign`.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Loaded where a signature is checked or made: the operator process carries
    # cryptography (about 9 MB) only once it checks a licence.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


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


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(
    private_key: Ed25519PrivateKey, plugin: str, namespace: str, expires: datetime.datetime
) -> str:
    """A licence for `plugin` in `namespace`, valid until `expires`."""
    payload = json.dumps(
        {"plugin": plugin, "namespace": namespace, "expires": expires.isoformat()},
        sort_keys=True,
    ).encode()
    return f"{_b64encode(payload)}.{_b64encode(private_key.sign(payload))}"


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    """The base64 public key to put in the operator's `license_public_keys`."""
    raw = private_key.public_key().public_bytes_raw()
    return base64.b64encode(raw).decode()


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
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        payload_text, signature_text = token.strip().split(".")
        payload, signature = _b64decode(payload_text), _b64decode(signature_text)
        claims = json.loads(payload)
        expires = datetime.datetime.fromisoformat(claims["expires"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return LicenseCheck(Verdict.INVALID, "the licence is not a Switchboard licence token")
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=datetime.UTC)
    if not any(_signed_by(key, payload, signature) for key in public_keys):
        return LicenseCheck(
            Verdict.INVALID, "the licence signature matches none of the trusted public keys"
        )
    if claims.get("plugin") != plugin or claims.get("namespace") != namespace:
        return LicenseCheck(
            Verdict.INVALID,
            f"the licence is for plugin {claims.get('plugin')!r} in namespace "
            f"{claims.get('namespace')!r}, not {plugin!r} in {namespace!r}",
        )
    if now <= expires:
        return LicenseCheck(Verdict.VALID, f"licensed until {expires.isoformat()}", expires)
    if now <= expires + grace:
        return LicenseCheck(
            Verdict.IN_GRACE,
            f"the licence expired at {expires.isoformat()}; the integration keeps running "
            f"until {(expires + grace).isoformat()}: renew it",
            expires,
        )
    return LicenseCheck(
        Verdict.EXPIRED,
        f"the licence expired at {expires.isoformat()} and its grace period has ended",
        expires,
    )


def _signed_by(key_text: str, payload: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_text)).verify(signature, payload)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
