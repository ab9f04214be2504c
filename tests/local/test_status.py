"""What `switchboard status` and `logs` show is true (issue 19 item 5, issue 17 defect 6).

A plugin that never started, a YAML edit that was not applied, the real
reason of a failed call, a plugin's own log lines; and the operator's gates,
in the operator's words: a production integration with a tag image, an
expired licence, a missing dependency do not run locally.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switchboard.api.models import VendorIntegration
from switchboard.controller import gates, licensing
from switchboard.controller.settings import OperatorSettings
from tests.local.harness import LocalMode, flaky, integration, isolated_env, secret
from tests.support.wait import wait_for


def test_status_counts_a_plugin_that_never_started_and_says_why(workdir: Path) -> None:
    state = workdir / "state"
    state.mkdir()
    broken = flaky("broken", 2, state)
    broken["spec"]["config"]["unknown_setting"] = True  # the plugin's schema refuses it
    (workdir / "plugins.yaml").write_text(yaml.safe_dump_all([flaky("primary", 1, state), broken]))
    local = LocalMode(workdir, "plugins.yaml")
    try:
        local.wait_ready()
        status = local.cli("status")
        assert status.returncode == 0, status.stderr
        assert "1 of 2 plugins serving" in status.stdout
        row = local.row("broken")
        assert row["state"] == "failed"
        assert row["lastError"].startswith("Configuration rejected: config")
        assert "unknown_setting" in row["lastError"]
        line = next(x for x in status.stdout.splitlines() if x.startswith("default/broken"))
        assert "failed" in line and "Configuration rejected" in line
    finally:
        local.stop()


def test_status_says_when_the_yaml_was_not_applied(workdir: Path) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(yaml.safe_dump(flaky("primary", 1, state)))
    local = LocalMode(workdir, "plugins.yaml")
    try:
        local.wait_ready()
        wrong = flaky("primary", 0, state)  # priority starts at 1
        (workdir / "plugins.yaml").write_text(yaml.safe_dump(wrong))
        kept = local.wait_record("Kept the running plugins; the YAML has errors")
        assert "plugins.yaml: CommunicationPlugin 'primary': spec.priority" in kept["error"]
        status = local.cli("status")
        assert "YAML not applied (the plugins above keep running): " in status.stdout
        assert "plugins.yaml: CommunicationPlugin 'primary': spec.priority" in status.stdout
        assert "1 of 1 plugins serving" in status.stdout
    finally:
        local.stop()


def test_the_last_error_is_the_providers_reason_and_plugin_logs_are_shown(
    workdir: Path,
) -> None:
    state = workdir / "state"
    state.mkdir()
    (workdir / "plugins.yaml").write_text(
        yaml.safe_dump_all([flaky("primary", 1, state), flaky("secondary", 2, state)])
    )
    (state / "control.json").write_text('{"mode": "retryable"}')  # both share the file
    local = LocalMode(workdir, "plugins.yaml")
    try:
        local.wait_ready()
        failed = local.cli("send", "sms", "+15551234567", "x")
        assert failed.returncode == 1
        row = local.row("primary")
        assert row["lastError"] == "Failed a call (Send): RETRYABLE provider is overloaded"
        # The plugin's own lines: on the console with its name in front, and in its log.
        shown = local.plugin_lines("primary")
        assert any(line.startswith("info    Activated the plugin") for line in shown)
        logs = local.cli("logs", "primary")
        assert logs.returncode == 0, logs.stderr
        assert "Failed a call rpc=Send" in logs.stdout and "provider is overloaded" in logs.stdout
        raw = local.cli("logs", "default/secondary", "--raw", "--tail", "1")
        assert raw.stdout.startswith("{")
    finally:
        local.stop()


def test_the_operators_gates_apply_with_the_operators_words(workdir: Path) -> None:
    key = Ed25519PrivateKey.generate()
    expired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    licence = licensing.sign(key, "voltha", "default", expired)
    resources = [
        integration(
            "tagged",
            environment="production",  # production takes digest-pinned images only
        ),
        integration(
            "unlicensed",
            license={"secretName": "voltha-licence", "key": "token"},
        ),
        secret("voltha-licence", token=licence),
        integration("orphan", dependsOn=["missing"]),
        integration("base"),
        integration("dependent", dependsOn=["base"]),
    ]
    (workdir / "integrations.yaml").write_text(yaml.safe_dump_all(resources))
    env = isolated_env(
        workdir, SWITCHBOARD_LICENSE_PUBLIC_KEYS=f'["{licensing.public_key_text(key)}"]'
    )
    settings = OperatorSettings(license_public_keys=[licensing.public_key_text(key)])
    expected = {}
    for name in ("tagged", "unlicensed", "orphan"):
        body = next(r for r in resources if r["metadata"]["name"] == name)
        resource = VendorIntegration.model_validate(
            {**body, "metadata": {**body["metadata"], "namespace": "default"}}
        )
        world = gates.Observed(
            secret_keys=None, license_token=licence, siblings={}, namespace_max_security_level=None
        )
        blocking = gates.evaluate(resource, settings.gate_policy(), world).blocking
        assert blocking is not None
        expected[name] = blocking
    local = LocalMode(workdir, "integrations.yaml", env=env)
    try:
        local.wait_ready()
        for name, gate in expected.items():
            row = local.row(name)
            assert row["state"] == "blocked", row
            assert (row["reason"], row["message"]) == (str(gate.reason), gate.message)
            assert row["pid"] is None
        assert (
            "The production environment requires a digest-pinned image"
            in (local.row("tagged")["message"])
        )
        assert local.row("unlicensed")["reason"] == "LicenseExpired"
        assert local.row("orphan")["message"] == (
            "Waiting for VendorIntegration 'missing', which does not exist yet."
        )
        # A dependency that exists waits for the other to serve, then runs.
        wait_for(lambda: local.row("dependent")["state"] == "serving", 90, what="dependent")
        assert local.row("base")["state"] == "serving"
        status = local.cli("status")
        assert "2 of 5 plugins serving" in status.stdout
        line = next(x for x in status.stdout.splitlines() if x.startswith("default/tagged"))
        assert "blocked" in line and "ImageRefused: The production environment" in line
        tagged = expected["tagged"]
        assert local.records_of(
            "A plugin does not run",
            plugin="default/tagged",
            kind="VendorIntegration",
            gate=str(tagged.type),
            reason=str(tagged.reason),
            detail=tagged.message,
        )
        # Each verdict is in the audit trail, with who and why, and so is its change.
        trail = json.loads(local.cli("audit", "-o", "json").stdout)
        gates_seen = {
            (e["target"], e["outcome"])
            for e in trail
            if e["action"] == "gate" and e["actor"] == "switchboard-up"
        }
        assert ("VendorIntegration/tagged", "ImageRefused") in gates_seen
        assert ("VendorIntegration/unlicensed", "LicenseExpired") in gates_seen
        assert ("VendorIntegration/dependent", "passed") in gates_seen
    finally:
        local.stop()
