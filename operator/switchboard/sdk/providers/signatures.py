"""Signed callbacks: HMAC schemes, timestamps against replays, ECDSA public keys
(``cryptography``, imported on first use) and Switchboard's own webhook signature."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from typing import Any, Final

from switchboard.sdk._errors import ConfigError, Unauthenticated

#: How far (seconds, either way) the timestamp a signed callback carries may be
#: from now: a replay of a recorded callback later than this is refused.
DEFAULT_RECEIPT_TOLERANCE_SECONDS: Final = 300.0


def sign_webhook(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}." + body`` keyed with ``secret``.

    The scheme of the generic-webhook plugin (docs/plugins/generic-webhook.md);
    a receiver recomputes it over the raw body it received and compares with
    ``hmac.compare_digest``.
    """
    return hmac_hex(secret, f"{timestamp}.".encode() + body)


def verify_webhook(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = DEFAULT_RECEIPT_TOLERANCE_SECONDS,
    provider: str = "The caller",
    now: float | None = None,
) -> None:
    """Raise ``Unauthenticated`` unless ``signature`` is ``sign_webhook(secret, timestamp, body)``
    (bare hex or ``sha256=<hex>``) and ``timestamp`` is fresh (``check_timestamp``).

    The receiving side of the generic-webhook scheme: a receipt posted back to
    Switchboard is signed the way Switchboard signs what it posts.
    """
    check_timestamp(timestamp, tolerance_seconds=tolerance_seconds, provider=provider, now=now)
    expected = sign_webhook(secret, timestamp.strip(), body)
    if not signatures_match(expected, signature.strip().removeprefix("sha256=")):
        raise Unauthenticated(
            f"{provider}'s signature does not match the signing secret: the callback was "
            "signed with another secret or altered on the way"
        )


def hmac_digest(key: str | bytes, data: bytes, algorithm: str = "sha256") -> bytes:
    """The HMAC of ``data`` keyed with ``key`` (a ``str`` is UTF-8 encoded), as bytes.

    ``algorithm`` is a ``hashlib`` name: ``"sha256"`` (default), ``"sha1"``,
    ``"sha512"``, ``"md5"``. Providers that send it base64-encoded (Twilio)
    encode these bytes; ``hmac_hex`` is the hex form.
    """
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, data, algorithm).digest()


def hmac_hex(key: str | bytes, data: bytes, algorithm: str = "sha256") -> str:
    """Lower-case hex HMAC of ``data`` keyed with ``key`` (``hmac_digest`` in hex)."""
    return hmac_digest(key, data, algorithm).hex()


def signatures_match(expected: str, received: str) -> bool:
    """Whether two signatures are equal, compared in constant time (``hmac.compare_digest``).

    Compare what the callback carries with what was computed from the plugin's
    own secret; an early exit on the first differing character would tell a
    forger how much of a guess was right.
    """
    return hmac.compare_digest(expected.encode(), received.encode())


def check_timestamp(
    value: str | int | None,
    *,
    tolerance_seconds: float = DEFAULT_RECEIPT_TOLERANCE_SECONDS,
    provider: str = "The caller",
    now: float | None = None,
) -> int:
    """The Unix time in ``value``, if it is at most ``tolerance_seconds`` from now.

    For signed callbacks whose signature covers a timestamp: an old callback
    replayed by someone who recorded it (or one stamped far ahead) is refused
    with ``Unauthenticated``, as is a missing or non-numeric timestamp.
    """
    try:
        stamp = int(str(value).strip()) if value is not None else None
    except ValueError:
        stamp = None
    if stamp is None:
        raise Unauthenticated(f"{provider}'s callback has no usable signature timestamp")
    age = (time.time() if now is None else now) - stamp
    if abs(age) > tolerance_seconds:
        when = f"{int(age)} s old" if age > 0 else f"{int(-age)} s in the future"
        raise Unauthenticated(
            f"{provider}'s callback is signed with a timestamp {when}; at most "
            f"{tolerance_seconds:g} s is accepted (a replayed or delayed callback)"
        )
    return stamp


def load_ecdsa_public_key(text: str, *, field: str) -> Any:
    """The elliptic-curve public key in ``text``, or ``ConfigError`` naming ``field``.

    ``text`` is a PEM ``PUBLIC KEY`` block or its base64 body alone (a DER
    SubjectPublicKeyInfo, as SendGrid shows its Event Webhook verification
    key). Needs ``cryptography`` (imported on first use).
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        load_der_public_key,
        load_pem_public_key,
    )

    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = load_pem_public_key(stripped.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(stripped.split()), validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{field}: not a PEM or base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{field}: not an elliptic-curve (ECDSA) public key")
    return key


def ecdsa_signature_valid(public_key: Any, data: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64 of a DER ECDSA signature) signs SHA-256 of ``data``.

    ``public_key`` comes from ``load_ecdsa_public_key``. A signature that is
    not base64 or not DER is simply not valid.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        public_key.verify(
            base64.b64decode(signature.strip(), validate=True),
            data,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
