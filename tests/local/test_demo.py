"""The README's first command: the local demo delivers email, a webhook and SMS with failover.

Runs `examples/local/sink.py` (the demo's SMTP server and HTTP receivers) and
`switchboard up` on the demo's own YAML, moved to free ports, as child
processes; sends from the CLI and from the Python client; and reads what
arrived at the sink.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import socket
import subprocess
import sys
from email import message_from_bytes
from email.policy import default as email_policy
from pathlib import Path

from switchboard.client import Switchboard
from tests.local.harness import LocalMode
from tests.support.controlplane import free_port
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "local"


def test_demo_delivers_email_webhook_and_sms_with_failover(tmp_path: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    outbox = tmp_path / "outbox"
    config = tmp_path / "demo"
    config.mkdir()
    (config / "plugins.yaml").write_text(
        (DEMO / "plugins.yaml")
        .read_text()
        .replace("port: 2525", f"port: {smtp_port}")
        .replace("127.0.0.1:8025", f"127.0.0.1:{http_port}")
    )
    sink = subprocess.Popen(
        [
            sys.executable,
            str(DEMO / "sink.py"),
            f"--outbox={outbox}",
            f"--smtp-port={smtp_port}",
            f"--http-port={http_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    local = LocalMode(tmp_path, str(config), "--plugins", str(REPO / "plugin-images"))
    try:
        info = local.wait_ready()
        cli = local.cli(
            "send", "email", "you@example.com", "Hello from Switchboard", "--subject", "Demo"
        )
        assert cli.returncode == 0, cli.stderr
        with Switchboard(info["url"], info["token"]) as client:
            hook = client.send_message("webhook", "ops", "deploy finished")
            sms = client.send_message("sms", "+15551234567", "Your code is 123456")
        assert hook.plugin == "default/webhook"
        assert sms.plugin == "default/vonage"
        assert [(a.plugin, a.outcome) for a in sms.attempts] == [
            ("default/twilio", "retryable"),
            ("default/vonage", "success"),
        ]
        assert "503" in sms.attempts[0].message

        arrived = wait_for(
            lambda: len(list(outbox.glob("*"))) == 3 and sorted(outbox.glob("*")), 10
        )
        email_file, webhook_file, sms_file = arrived
        mail = message_from_bytes(email_file.read_bytes(), policy=email_policy)
        assert (mail["Subject"], mail["To"]) == ("Demo", "you@example.com")
        assert mail.get_content().strip() == "Hello from Switchboard"

        record = json.loads(webhook_file.read_text())
        assert record["body"]["content"] == "deploy finished"
        headers = {k.lower(): v for k, v in record["headers"].items()}
        signed = f"{headers['x-switchboard-timestamp']}.{record['raw']}".encode()
        expected = hmac.new(b"demo-signing-secret", signed, hashlib.sha256).hexdigest()
        assert headers["x-switchboard-signature"] == f"sha256={expected}"

        delivered = json.loads(sms_file.read_text())
        assert (delivered["to"], delivered["text"]) == ("15551234567", "Your code is 123456")
    finally:
        local.stop()
        sink.terminate()
        sink.wait(10)
        if sink.stdout is not None:
            sink.stdout.close()


def _sink(outbox: Path, smtp_port: int, http_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(DEMO / "sink.py"),
            f"--outbox={outbox}",
            f"--smtp-port={smtp_port}",
            f"--http-port={http_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_sink_keeps_the_last_runs_outbox_and_refuses_a_second_copy(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    smtp_port, http_port = free_port(), free_port()
    for run in ("first", "second"):
        sink = _sink(outbox, smtp_port, http_port)
        try:
            wait_for(lambda: _listening(smtp_port), 30, what="the sink's SMTP server")
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                smtp.sendmail("demo@example.com", ["you@example.com"], f"Subject: {run}\n\nhi")
            wait_for(lambda r=run: any(r in p.read_text() for p in outbox.glob("*")), 10)
            if run == "second":
                twin = _sink(outbox, smtp_port, http_port)
                _, err = twin.communicate(timeout=60)
                assert twin.returncode == 2
                assert f"Port {smtp_port}, {http_port} on 127.0.0.1 is in use" in err
                assert "Traceback" not in err
        finally:
            sink.terminate()
            sink.communicate(timeout=30)
    saved = sorted(outbox.glob("*"))
    assert [p.name for p in saved] == ["0001-email.eml", "0002-email.eml"]
    assert "Subject: first" in saved[0].read_text()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
