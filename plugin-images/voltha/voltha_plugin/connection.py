"""The gRPC connection to VOLTHA's northbound API and what its answers mean.

``VolthaConnection.call("GetDevice", request)`` calls ``voltha.VolthaService``
with the credentials as ``authorization: Basic ...`` metadata and a deadline,
and turns a failure into the SDK's error classes:

| VOLTHA answered | error |
| --- | --- |
| UNAVAILABLE, DEADLINE_EXCEEDED | RetryableError (VOLTHA unreachable) |
| NOT_FOUND | PermanentError: the subject is not known to VOLTHA |
| INVALID_ARGUMENT, OUT_OF_RANGE | InvalidInput with VOLTHA's message |
| UNAUTHENTICATED | Unauthenticated |
| ALREADY_EXISTS, FAILED_PRECONDITION, PERMISSION_DENIED, UNIMPLEMENTED | PermanentError |
| anything else | RetryableError |

It also keeps what VOLTHA last said about us (``reachable``, ``unreachable``
or ``unauthenticated``) and tells ``on_state`` when that changes, so the
plugin's health follows VOLTHA: SERVING only while VOLTHA answers and accepts
the credentials.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from voltha_protos import voltha_pb2_grpc

from switchboard.sdk import (
    InvalidInput,
    PermanentError,
    PluginError,
    RetryableError,
    Unauthenticated,
)

#: How long one probe of VOLTHA's reachability may take at most.
PROBE_TIMEOUT: Final = 3.0
_CHANNEL_OPTIONS: Final[list[tuple[str, int | str]]] = [
    # Reconnect quickly once VOLTHA is back (gRPC's default waits up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass(frozen=True)
class Endpoint:
    """Where VOLTHA is and how to reach it."""

    target: str
    tls: bool
    ca_certificate: bytes | None
    server_name: str | None
    request_timeout: float
    #: Suggested to callers with a RetryableError while VOLTHA is away.
    retry_after: float


class VolthaConnection:
    """One channel to VOLTHA; ``call`` one RPC; ``close`` the channel."""

    def __init__(
        self,
        endpoint: Endpoint,
        username: str,
        password: str,
        on_state: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.endpoint = endpoint
        options = list(_CHANNEL_OPTIONS)
        if endpoint.server_name:
            options.append(("grpc.ssl_target_name_override", endpoint.server_name))
        if endpoint.tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=endpoint.ca_certificate)
            self._channel = grpc.aio.secure_channel(endpoint.target, credentials, options)
        else:
            self._channel = grpc.aio.insecure_channel(endpoint.target, options)
        self.stub = voltha_pb2_grpc.VolthaServiceStub(self._channel)
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.metadata = (("authorization", f"Basic {token}"),)
        self._on_state = on_state
        #: What VOLTHA last answered: "reachable", "unreachable" or "unauthenticated".
        self.state: str | None = None

    async def call(
        self, name: str, request: Any, *, subject: str = "", timeout: float | None = None
    ) -> Any:
        """Call ``VolthaService/<name>``; its failure as the SDK's error classes."""
        method = getattr(self.stub, name)
        try:
            response = await method(
                request,
                timeout=timeout or self.endpoint.request_timeout,
                metadata=self.metadata,
            )
        except grpc.aio.AioRpcError as error:
            raise await self.translate(error, name, subject) from None
        await self.note("reachable")
        return response

    async def translate(self, error: grpc.aio.AioRpcError, rpc: str, subject: str) -> PluginError:
        code, details = error.code(), error.details() or ""
        what = f"VOLTHA {rpc}"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            await self.note("unreachable", f"{code.name}: {details}")
            return RetryableError(
                f"{what} failed: VOLTHA at {self.endpoint.target} is unreachable "
                f"({code.name}: {details})",
                retry_after=self.endpoint.retry_after,
            )
        if code == grpc.StatusCode.NOT_FOUND:
            return PermanentError(f"{what}: {subject or 'the object'} is not known to VOLTHA")
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            return InvalidInput(f"{what} rejected the request: {details}")
        if code == grpc.StatusCode.UNAUTHENTICATED:
            await self.note("unauthenticated")
            return Unauthenticated(
                f"{what}: VOLTHA rejected the credentials in VOLTHA_USERNAME/VOLTHA_PASSWORD"
            )
        if code in (
            grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNIMPLEMENTED,
        ):
            return PermanentError(f"{what} refused: {code.name}: {details}")
        return RetryableError(f"{what} failed: {code.name}: {details}")

    async def note(self, state: str, reason: str = "") -> None:
        """Record what VOLTHA said; tell ``on_state`` when it changed."""
        if state == self.state:
            return
        self.state = state
        await self._on_state(state, reason)

    async def close(self) -> None:
        await self._channel.close()
