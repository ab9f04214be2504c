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

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

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
    Names identify callers (in logs and decisions), so they must be unique,
    and so must keys; a file breaking either rule is refused. A token is
    compared with every key in constant time, so timing tells nothing about
    which key it resembles.
    """

    def __init__(self, keys: list[ApiKey]) -> None:
        for field_name in ("name", "key"):
            seen: set[str] = set()
            for index, key in enumerate(keys):
                value = getattr(key, field_name)
                if value in seen:
                    shown = f" {value!r}" if field_name == "name" else ""
                    raise ValueError(f"keys[{index}]: the {field_name}{shown} is used twice")
                seen.add(value)
        self.keys = keys
        self._by_name = {key.name: key for key in keys}
        self._digests = [(hashlib.sha256(key.key.encode()).digest(), key) for key in keys]

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
        try:
            return cls(keys)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    async def authenticate(self, token: str) -> Caller:
        offered = hashlib.sha256(token.encode()).digest()
        matched = None
        for digest, key in self._digests:  # every key, no early exit
            if hmac.compare_digest(digest, offered):
                matched = key
        if matched is None:
            raise AuthError(401, "The API key is not known to this router.")
        namespaces = sorted(matched.namespaces - {"*"})
        # Resources applied without a namespace live in "default", here as in a cluster.
        return Caller(name=matched.name, home_namespace=(namespaces or ["default"])[0])

    async def allowed(
        self, caller: Caller, namespace: str, verb: str, resource: str, name: str = ""
    ) -> bool:
        key = self._by_name.get(caller.name)
        if key is None or not ({"*", namespace} & key.namespaces):
            return False
        if resource == "permissions":
            return bool({"*", name} & key.permissions)
        return True
