"""``manifest.yml`` validation and ``switchboard plugin validate``: problems named, fixes said."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from switchboard.cli import main
from switchboard.sdk import IntegrationType, PluginPackageError, load_manifest
from tests.sdk.harness import ECHO_SMS, MINI_OLT

VALID = """\
plugin_id: acme-sms
name: Acme SMS
version: 1.0.0
channel_type: sms
entry_point: plugin:AcmeSms
"""


def write_manifest(directory: Path, text: str) -> Path:
    (directory / "manifest.yml").write_text(text)
    return directory


def test_minimal_manifest_gets_defaults(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path, VALID))

    assert manifest.is_communication_plugin
    assert (manifest.entry_module, manifest.entry_class) == ("plugin", "AcmeSms")
    assert manifest.required_config == {"type": "object"}
    assert manifest.secrets.required == ()


def test_vendor_form_and_dotted_entry_point(tmp_path: Path) -> None:
    manifest = load_manifest(
        write_manifest(
            tmp_path,
            VALID.replace(
                "channel_type: sms", "vendor: voltha\nintegration_type: monitoring"
            ).replace("plugin:AcmeSms", "pkg.module.Watcher"),
        )
    )

    assert manifest.integration_type is IntegrationType.MONITORING
    assert (manifest.entry_module, manifest.entry_class) == ("pkg.module", "Watcher")


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("channel_type: sms", "channel_type: sms\nvendor: acme"), "not both"),
        (("channel_type: sms\n", ""), "set `channel_type` for a communication plugin"),
        (("channel_type: sms", "vendor: acme"), "both `vendor` and `integration_type`"),
        (("channel_type: sms", "vendor: a\nintegration_type: billing"), "integration_type:"),
        (("version: 1.0.0", "version: 1.0"), "version: '1.0' is not a semantic version"),
        (
            ("plugin_id: acme-sms", "plugin_id: Acme_SMS"),
            "plugin_id: 'Acme_SMS' is not a DNS label",
        ),
        (("plugin:AcmeSms", "plugin/AcmeSms"), "is not `module:Class` or `module.Class`"),
        (
            (
                "channel_type: sms",
                "channel_type: sms\nrequired_config: {type: object, required: 5}",
            ),
            "required_config: not a valid JSON Schema at required",
        ),
        (
            ("channel_type: sms", "channel_type: sms\nrequired_config: {type: string}"),
            "must describe an object",
        ),
        (
            ("channel_type: sms", "channel_type: sms\nsecrets: {required: [A], optional: [A]}"),
            "listed as both required and optional",
        ),
        (("channel_type: sms", "channel_type: sms\noperations: [send, send]"), "more than once"),
        (("channel_type: sms", "channel_type: sms\ncolour: blue"), "colour: Extra inputs"),
        (
            (
                "channel_type: sms",
                "channel_type: sms\noperations: [status]\n"
                "operation_permissions: {reboot: device.manage}",
            ),
            "names ['reboot'], which are not in `operations`",
        ),
        (
            (
                "channel_type: sms",
                "channel_type: sms\noperations: [status]\n"
                "operation_permissions: {status: Device Read}",
            ),
            "not permission names",
        ),
    ],
)
def test_invalid_manifest_names_the_field_and_the_problem(
    tmp_path: Path, change: tuple[str, str], complaint: str
) -> None:
    with pytest.raises(PluginPackageError) as raised:
        load_manifest(write_manifest(tmp_path, VALID.replace(*change)))

    assert complaint in str(raised.value)


@pytest.mark.parametrize("plugin_dir", [ECHO_SMS, MINI_OLT], ids=lambda path: path.name)
def test_validate_accepts_a_plugin_that_agrees_with_its_manifest(plugin_dir: Path) -> None:
    result = CliRunner().invoke(main, ["plugin", "validate", str(plugin_dir)])

    assert result.exit_code == 0, result.output
    assert "is valid" in result.output


def copy_of_echo(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    target = tmp_path / "echo"
    shutil.copytree(ECHO_SMS, target, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = (target / "manifest.yml").read_text()
    for old, new in replacements:
        assert old in manifest
        manifest = manifest.replace(old, new)
    (target / "manifest.yml").write_text(manifest)
    return target


def test_validate_reports_every_disagreement_with_the_fix(tmp_path: Path) -> None:
    plugin_dir = copy_of_echo(
        tmp_path,
        ("channel_type: sms", "channel_type: email"),
        ("capabilities: [send, delivery_receipts]", "capabilities: [send, attachments]"),
        ("operations: [shout]", "operations: [archive]"),
        ("operation_permissions: {shout: messages.shout}", "operation_permissions: {}"),
    )

    result = CliRunner().invoke(main, ["plugin", "validate", str(plugin_dir)])

    assert result.exit_code == 1
    assert "EchoSms and manifest.yml disagree:" in result.output
    expected = [
        "channel_type: manifest.yml says 'email', EchoSms.channel_type says 'sms'; make them equal",
        "capabilities: manifest.yml lists ['attachments'] but EchoSms.capabilities does not",
        "capabilities: EchoSms.capabilities declares ['delivery_receipts'] but manifest.yml "
        "does not; add them under `capabilities:` in manifest.yml",
        "operations: manifest.yml lists 'archive' but EchoSms has no such operation; "
        "remove it from the manifest or declare it with @operation",
        "operations: EchoSms declares 'shout' but manifest.yml does not list it; "
        "add it under `operations:`",
    ]
    for line in expected:
        assert line in result.output


def test_validate_reports_a_kind_mismatch(tmp_path: Path) -> None:
    plugin_dir = copy_of_echo(
        tmp_path, ("channel_type: sms", "vendor: acme\nintegration_type: monitoring")
    )

    result = CliRunner().invoke(main, ["plugin", "validate", str(plugin_dir)])

    assert result.exit_code == 1
    assert (
        "kind: manifest.yml declares integration_type monitoring but EchoSms is a "
        "communication plugin (MessagingPlugin)"
    ) in result.output


def test_validate_reports_a_missing_entry_point_class(tmp_path: Path) -> None:
    plugin_dir = copy_of_echo(tmp_path, ("echo_sms:EchoSms", "echo_sms:EchoEmail"))

    result = CliRunner().invoke(main, ["plugin", "validate", str(plugin_dir)])

    assert result.exit_code == 1
    assert "module 'echo_sms' has no 'EchoEmail'" in result.output


def test_validate_reports_unimplemented_abstract_operations(tmp_path: Path) -> None:
    write_manifest(
        tmp_path,
        VALID.replace("channel_type: sms", "vendor: acme\nintegration_type: analytics"),
    )
    (tmp_path / "plugin.py").write_text(
        "from switchboard.sdk import AnalyticsPlugin\n\n\nclass AcmeSms(AnalyticsPlugin):\n"
        "    pass\n"
    )

    result = CliRunner().invoke(main, ["plugin", "validate", str(tmp_path)])

    assert result.exit_code == 1
    assert "does not implement generate_report, track_event, track_events_batch" in result.output
