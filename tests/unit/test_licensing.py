"""Licences without a cluster: EdDSA JWTs, their subject, expiry and grace."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard import cli
from switchboard.controller import licensing
from switchboard.controller.licensing import Verdict

NOW = datetime.datetime(2026, 6, 1, 12, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(days=7)


def _check(token: str, key: Ed25519PrivateKey, **overrides: object) -> licensing.LicenseCheck:
    options: dict[str, object] = {
        "plugin": "voltha",
        "namespace": "tenant-a",
        "public_keys": [licensing.public_key_text(key)],
        "grace": GRACE,
        "now": NOW,
    }
    options.update(overrides)
    return licensing.verify(token, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expires_in", "verdict"),
    [
        (datetime.timedelta(days=30), Verdict.VALID),
        (datetime.timedelta(seconds=1), Verdict.VALID),
        (datetime.timedelta(days=-1), Verdict.IN_GRACE),
        (datetime.timedelta(days=-6, hours=-23), Verdict.IN_GRACE),
        (datetime.timedelta(days=-7, hours=-1), Verdict.EXPIRED),
        (datetime.timedelta(days=-400), Verdict.EXPIRED),
    ],
)
def test_expiry_and_grace(expires_in: datetime.timedelta, verdict: Verdict) -> None:
    key = Ed25519PrivateKey.generate()
    token = licensing.sign(key, "voltha", "tenant-a", NOW + expires_in, now=NOW)
    check = _check(token, key)
    assert check.verdict == verdict
    assert check.allows_running == (verdict in (Verdict.VALID, Verdict.IN_GRACE))
    assert check.expires is not None


def test_the_token_is_a_standard_eddsa_jwt() -> None:
    key = Ed25519PrivateKey.generate()
    token = licensing.sign(key, "voltha", "tenant-a", NOW + datetime.timedelta(days=1), now=NOW)
    header, claims, _signature = token.split(".")
    pad = lambda text: text + "=" * (-len(text) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(header))) == {"alg": "EdDSA", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(pad(claims)))["plugin"] == "voltha"


def test_forged_tampered_misdirected_and_garbage_tokens_are_invalid() -> None:
    trusted, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    later = NOW + datetime.timedelta(days=30)
    forged = licensing.sign(other, "voltha", "tenant-a", later, now=NOW)
    assert _check(forged, trusted).verdict == Verdict.INVALID
    assert "none of the trusted public keys" in _check(forged, trusted).message
    good = licensing.sign(trusted, "voltha", "tenant-a", later, now=NOW)
    header, _claims, signature = good.split(".")
    tampered_claims = licensing.sign(trusted, "voltha", "tenant-b", later, now=NOW).split(".")[1]
    tampered = f"{header}.{tampered_claims}.{signature}"
    assert _check(tampered, trusted).verdict == Verdict.INVALID
    elsewhere = licensing.sign(trusted, "voltha", "tenant-b", later, now=NOW)
    misdirected = _check(elsewhere, trusted)
    assert misdirected.verdict == Verdict.INVALID and "'tenant-b'" in misdirected.message
    for garbage in ("", "not-a-token", "a.b.c", "a.b"):
        assert _check(garbage, trusted).verdict == Verdict.INVALID
    # An unparseable trusted key is skipped, the good one still counts.
    assert _check(
        good, trusted, public_keys=["***", licensing.public_key_text(trusted)]
    ).verdict == (Verdict.VALID)
    # An expired licence signed by an untrusted key is invalid, not expired.
    stale = licensing.sign(other, "voltha", "tenant-a", NOW - datetime.timedelta(days=30), now=NOW)
    assert _check(stale, trusted).verdict == Verdict.INVALID


def test_license_sign_command_makes_a_licence_the_operator_accepts(tmp_path: Path) -> None:
    runner = CliRunner()
    key_file = str(tmp_path / "vendor.pem")
    made = runner.invoke(cli.main, ["license", "keygen", "--out", key_file])
    assert made.exit_code == 0, made.output
    public_key = made.output.strip().splitlines()[-1]
    private = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    assert licensing.public_key_text(private) == public_key

    signed = runner.invoke(
        cli.main,
        [
            "license",
            "sign",
            "--key",
            key_file,
            "--vendor",
            "voltha",
            "--namespace",
            "tenant-a",
            "--expires",
            "2030-01-01",
        ],
    )
    assert signed.exit_code == 0, signed.output
    token = signed.output.strip()
    check = licensing.verify(
        token,
        plugin="voltha",
        namespace="tenant-a",
        public_keys=[public_key],
        grace=GRACE,
        now=NOW,
    )
    assert check.verdict == Verdict.VALID
    assert check.expires == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    # The private key never appears in what the command prints.
    assert "PRIVATE" not in signed.output and "PRIVATE" not in made.output
