"""The cheapest Python gRPC hop: a proxy that forwards bytes and does nothing else.

`bench.router` runs it beside the router, against the same plugin, to show
what any router written with Python gRPC costs on this machine before it
does any routing: one asyncio gRPC server, one asyncio gRPC client, no
parsing, no auth, no selection, no metrics.

    python -m bench.passthrough LISTEN_ADDRESS PLUGIN_ADDRESS

It answers the router's `SendMessage` method with the plugin's `Send` reply,
so the load generator sends the plugin's request bytes to it.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

SERVICE, METHOD = "switchboard.router.v1.Router", "SendMessage"
PLUGIN_SEND = "/switchboard.plugin.v1.PluginService/Send"


def _same(data: bytes) -> bytes:
    return data


async def serve(listen: str, plugin: str) -> None:
    channel = grpc.aio.insecure_channel(plugin)
    send = channel.unary_unary(PLUGIN_SEND, request_serializer=_same, response_deserializer=_same)

    async def forward(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        reply: bytes = await send(request, timeout=10)
        return reply

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            METHOD: grpc.unary_unary_rpc_method_handler(
                forward, request_deserializer=_same, response_serializer=_same
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(listen)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
