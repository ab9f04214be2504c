"""A TCP forwarder: ``python -m tests.support.tcpforward LISTEN_HOST:PORT TARGET_HOST:PORT``.

The real node's API server listens on its network namespace's loopback, which
pods cannot reach. The harness runs this forwarder on the node's address,
port 443, as the API server's endpoint for pods, and sends the ``kubernetes``
Service address there with a DNAT rule (kube-proxy's job): in-cluster clients
(the operator and router pods) then find the API server the way they do in
any cluster, through ``KUBERNETES_SERVICE_HOST``/``_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def forward(listen: str, target: str) -> None:
    target_host, target_port = _address(target)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                target_host, target_port
            )
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    host, port = _address(listen)
    server = await asyncio.start_server(handle, host, port)
    print(f"forwarding {listen} -> {target}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(forward(sys.argv[1], sys.argv[2]))
