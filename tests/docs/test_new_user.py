"""A new user's first hour, as written (issue 19): a fresh clone, `make demo` in the
background, the README's commands in order, the seeds' calls with a valid number, and a
second `make demo` while the first runs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.docs.runner import Terminal, loopback_namespace, run_document

REPO = Path(__file__).resolve().parents[2]
SEEDS = """
import asyncio

from switchboard import send_message, system_status


async def main() -> None:
    # The communication seed's call shapes, as written there, with a valid number.
    success = await send_message(
        channel_type="sms",
        recipient="+15551234567",
        content="Your verification code is: 123456",
    )
    assert success, success
    positional = await send_message("sms", "+15551234567", "Hello world")
    assert positional.plugin == "default/vonage", positional
    welcome = await send_message("email", "user@example.com", "Welcome!")
    assert welcome
    status = await system_status()
    print(f"Loaded plugins: {status['total_plugins']}")
    print(f"Healthy plugins: {status['healthy_plugins']}")
    # The seed's own sample number is not a phone number; the error says why.
    try:
        await send_message("sms", "+1234567890", "x")
    except Exception as error:
        print(f"Refused: {error}")


asyncio.run(main())
"""


def test_a_fresh_clone_runs_the_readme_and_the_seeds(tmp_path: Path) -> None:
    clone = tmp_path / "switchboard"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
    # The installs need the package registries: before entering the loopback-only namespace.
    built = subprocess.run(
        ["make", "dev"], cwd=clone, capture_output=True, text=True, timeout=1200, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    environment = {"LANG": "C.UTF-8", "XDG_STATE_HOME": str(tmp_path / "state")}
    checks: dict[str, str] = {}

    def seeds_and_second_demo(terminal: Terminal) -> None:
        (clone / "seeds.py").write_text(SEEDS)
        seeds = terminal.run('eval "$(.venv/bin/switchboard env)" && .venv/bin/python seeds.py')
        checks["seeds"] = seeds.stdout
        second = terminal.run("make demo")
        checks["second"] = f"exit {second.returncode}\n{second.stdout}"
        status = terminal.run(".venv/bin/switchboard status")
        checks["status after"] = status.stdout

    with loopback_namespace() as prefix:
        problems = run_document(
            clone / "README.md", clone, environment, prefix, after=seeds_and_second_demo
        )
    assert problems == []
    assert "Loaded plugins: 4" in checks["seeds"], checks["seeds"]
    # The demo's Twilio answers 503: after repeated failures the router ejects it for a while.
    assert re.search(r"Healthy plugins: [34]\n", checks["seeds"])
    assert (
        "Refused: INVALID_INPUT: recipient: '+1234567890' is not a valid phone number: "
        "too short for a +1 number" in checks["seeds"]
    )
    second = checks["second"]
    assert not second.startswith("exit 0"), second
    assert "is in use" in second or "already runs" in second, second
    assert "Traceback" not in second
    after = checks["status after"]  # the first demo is untouched
    assert re.search(r"[34] of 4 plugins serving", after), after
    states = {
        line.split()[0]: line.split()[3] for line in after.splitlines()[2:]
    }  # ROUTE is 2 words
    assert states["default/twilio"] in ("serving", "ejected"), after
    assert {k: v for k, v in states.items() if k != "default/twilio"} == {
        "default/email": "serving",
        "default/webhook": "serving",
        "default/vonage": "serving",
    }
