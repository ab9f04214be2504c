"""Who is calling, and may they do this? Bearer tokens in, decisions out.

In Kubernetes the API server decides: a TokenReview says who a token belongs
to, a SubjectAccessReview whether RBAC lets them. The namespace is the
tenant, and every decision is made for one namespace, so plain RBAC decides
who may send through what:

    send on communicationplugins.switchboard.dev           to send a message
    invoke on vendorintegrations.switchboard.dev (name)     to invoke an integration
    use on permissions.switchboard.dev (name)               for each permission it declares
    list on communicationplugins.switchboard.dev            to read /v1/plugins

In local mode, API keys from a file stand in for both. Decisions are cached
for `auth_cache_seconds`.

Errors:

    AuthError       status 401 (who are you?) or 403 (not allowed)
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from kubernetes import client as k8s

from switchboard.api import constants

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class Caller:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: The tenant used when a request names none: a ServiceAccount's own namespace.
    home_namespace: str | None = None


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Authority(Protocol):
    async def authenticate(self, token: str) -> Caller: ...

    async def allowed(
        self, caller: Caller, namespace: str, verb: str, resource: str, name: str = ""
    ) -> bool: ...


class _TtlCache:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any:
        hit = self._items.get(key)
        if hit is None or hit[0] < self.clock():
            self._items.pop(key, None)
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) > 10_000:
            self._items.clear()  # bounded: a burst of distinct tokens cannot grow it forever
        self._items[key] = (self.clock() + self.seconds, value)


class KubernetesAuthority:
    """TokenReview and SubjectAccessReview against the API server."""

    def __init__(self, api_client: k8s.ApiClient, cache_seconds: float) -> None:
        self.authn = k8s.AuthenticationV1Api(api_client)
        self.authz = k8s.AuthorizationV1Api(api_client)
        self.cache = _TtlCache(cache_seconds)

    async def authenticate(self, token: str) -> Caller:
        cached = self.cache.get(("token", token))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        review = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token))
        result = await asyncio.to_thread(self.authn.create_token_review, review)
        status = result.status
        if not status or not status.authenticated or not status.user:
            raise AuthError(401, "The bearer token was not accepted by the cluster.")
        user = status.user
        name = user.username or ""
        home = None
        if name.startswith(SERVICE_ACCOUNT_PREFIX):
            home = name[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
        caller = Caller(
            name=name,
            groups=tuple(user.groups or ()),
            uid=user.uid or "",
            extra=tuple((k, tuple(v)) for k, v in sorted((user.extra or {}).items())),
            home_namespace=home,
        )
        self.cache.put(("token", token), caller)
        return caller

    async def allowed(
        self, caller: Caller, namespace: str, verb: str, resource: str, name: str = ""
    ) -> bool:
        key = ("sar", caller, namespace, verb, resource, name)
        cached = self.cache.get(key)
        if cached is not None:
            return bool(cached)
        review = k8s.V1SubjectAccessReview(
            spec=k8s.V1SubjectAccessReviewSpec(
                user=caller.name,
                groups=list(caller.groups),
                uid=caller.uid or None,
                extra={k: list(v) for k, v in caller.extra} or None,
                resource_attributes=k8s.V1ResourceAttributes(
                    namespace=namespace,
                    verb=verb,
                    group=constants.GROUP,
                    resource=resource,
                    name=name or None,
                ),
            )
        )
        result = await asyncio.to_thread(self.authz.create_subject_access_review, review)
        verdict = bool(result.status and result.status.allowed)
        self.cache.put(key, verdict)
        return verdict


@dataclass(frozen=True)
class ApiKey:
    name: str
    key: str
    namespaces: frozenset[str] = field(default_factory=lambda: frozenset({"*"}))
    permissions: frozenset[str] = field(default_factory=lambda: frozenset({"*"}))


class ApiKeyAuthority:
    """Local mode: API keys from a YAML file, `keys: [{name, key, namespaces, permissions}]`.

    `*` in `namespaces` or `permissions` allows any. A key may send, invoke
    and read status in its namespaces, and use the permissions it lists.
    """

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyAuthority:
        data = yaml.safe_load(path.read_text()) or {}
        keys = []
        for index, item in enumerate(data.get("keys", [])):
            if not item.get("key") or not item.get("name"):
                raise ValueError(f"{path}: keys[{index}] needs a name and a key")
            keys.append(
                ApiKey(
                    name=item["name"],
                    key=str(item["key"]),
                    namespaces=frozenset(item.get("namespaces", ["*"])),
                    permissions=frozenset(item.get("permissions", ["*"])),
                )
            )
        return cls(keys)

    async def authenticate(self, token: str) -> Caller:
        for key in self.keys:
            if hmac.compare_digest(key.key.encode(), token.encode()):
                namespaces = sorted(key.namespaces - {"*"})
                # Resources applied without a namespace live in "default", here as in a cluster.
                return Caller(name=key.name, home_namespace=(namespaces or ["default"])[0])
        raise AuthError(401, "The API key is not known to this router.")

    async def allowed(
        self, caller: Caller, namespace: str, verb: str, resource: str, name: str = ""
    ) -> bool:
        key = next((k for k in self.keys if k.name == caller.name), None)
        if key is None or not ({"*", namespace} & key.namespaces):
            return False
        if resource == "permissions":
            return bool({"*", name} & key.permissions)
        return True
