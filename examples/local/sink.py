"""The demo's outside world, on this machine: where delivered messages land.

- SMTP on 127.0.0.1:2525 (for `smtp-email`): every message is saved as
  `outbox/<n>-email.eml`.
- HTTP on 127.0.0.1:8025:
  - `POST /webhook` (for `generic-webhook`): saved as `outbox/<n>-webhook.json`;
  - `POST /twilio/...` answers 503, as Twilio does in an outage, so the demo's
    SMS primary fails and the router fails over;
  - `POST /vonage/sms/json` answers as Vonage does and saves the SMS as
    `outbox/<n>-sms.json`;
  - `GET /` lists everything that arrived.

    .venv/bin/python examples/local/sink.py [--outbox examples/local/outbox]

Files are numbered on from the highest number already in the outbox: a new
run adds to what the last one delivered. A port already in use (a demo
running) ends it at once with exit code 2 and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import socket
import sys
import uuid
from email import message_from_bytes
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

SMTP_PORT, HTTP_PORT = 2525, 8025


def next_number(directory: Path) -> int:
    """The number after the highest one in the outbox, so a new run never overwrites."""
    numbers = [int(p.name.split("-", 1)[0]) for p in directory.glob("[0-9]*-*")]
    return max(numbers, default=0) + 1


class Outbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(next_number(directory))

    def save(self, kind: str, suffix: str, data: bytes, summary: str) -> None:
        path = self.directory / f"{next(self._numbers):04d}-{kind}.{suffix}"
        path.write_bytes(data)
        print(f"[sink] {kind}: {summary}  ->  {path}", flush=True)


class SmtpHandler:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=email_policy)
        summary = f"to {', '.join(envelope.rcpt_tos)}, subject {message['Subject']!r}"
        self.outbox.save("email", "eml", envelope.content, summary)
        return "250 Message accepted for delivery"


def http_app(outbox: Outbox) -> web.Application:
    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower().startswith("x-switchboard")
        }
        # The raw body too: the signature covers exactly these bytes.
        record = {"headers": headers, "body": json.loads(body or b"{}"), "raw": body.decode()}
        outbox.save("webhook", "json", json.dumps(record, indent=2).encode(), "webhook delivered")
        return web.json_response({"id": str(uuid.uuid4())})

    async def twilio_down(request: web.Request) -> web.Response:
        return web.json_response(
            {"code": 20500, "message": "Service unavailable", "status": 503}, status=503
        )

    async def vonage(request: web.Request) -> web.Response:
        form = await request.post()
        record = {"to": form.get("to"), "from": form.get("from"), "text": form.get("text")}
        outbox.save("sms", "json", json.dumps(record, indent=2).encode(), f"SMS to {record['to']}")
        return web.json_response(
            {
                "message-count": "1",
                "messages": [
                    {
                        "to": form.get("to"),
                        "message-id": uuid.uuid4().hex[:16],
                        "status": "0",
                        "remaining-balance": "10.00",
                        "message-price": "0.01",
                        "network": "00000",
                    }
                ],
            }
        )

    async def index(request: web.Request) -> web.Response:
        items = sorted(outbox.directory.iterdir())
        rows = "".join(f"<li><a href='/outbox/{p.name}'>{p.name}</a></li>" for p in items)
        return web.Response(
            text=f"<h1>Switchboard demo outbox</h1><ul>{rows or '<li>nothing yet</li>'}</ul>",
            content_type="text/html",
        )

    async def item(request: web.Request) -> web.FileResponse:
        path = outbox.directory / request.match_info["name"]
        if path.parent != outbox.directory or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.add_routes(
        [
            web.post("/webhook", webhook),
            web.post("/twilio/{tail:.*}", twilio_down),
            web.post("/vonage/sms/json", vonage),
            web.get("/", index),
            web.get("/outbox/{name}", item),
        ]
    )
    return app


def ports_in_use(*ports: int) -> list[int]:
    """Which of `ports` something already listens on at 127.0.0.1."""
    taken = []
    for port in ports:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                taken.append(port)
    return taken


async def main(outbox_dir: Path, smtp_port: int, http_port: int) -> int:
    taken = ports_in_use(smtp_port, http_port)
    if taken:
        print(
            f"[sink] Port {', '.join(map(str, taken))} on 127.0.0.1 is in use: is the demo "
            "already running (make demo runs once per machine)? Stop it first, or pass "
            "--smtp-port and --http-port.",
            file=sys.stderr,
            flush=True,
        )
        return 2
    outbox = Outbox(outbox_dir)
    smtp = Controller(SmtpHandler(outbox), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    runner = web.AppRunner(http_app(outbox), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    print(
        f"[sink] SMTP on 127.0.0.1:{smtp_port}, HTTP on http://127.0.0.1:{http_port}/ "
        f"(delivered messages: {outbox_dir})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        smtp.stop()
        with contextlib.suppress(Exception):
            await runner.cleanup()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outbox", type=Path, default=Path(__file__).parent / "outbox")
    parser.add_argument("--smtp-port", type=int, default=SMTP_PORT)
    parser.add_argument("--http-port", type=int, default=HTTP_PORT)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.outbox, arguments.smtp_port, arguments.http_port)))
