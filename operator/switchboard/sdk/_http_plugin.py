"""``HttpProviderPlugin``: the base of messaging plugins that call one provider's HTTP API.

What every such plugin did by hand (check ``default_region``, open an
``httpx`` client with the provider's base URL, timeout and credentials, close
it, send each request through ``providers.send_request`` with the provider's
name, normalise phone numbers with the configured region) lives here once::

    class AcmeSmsPlugin(HttpProviderPlugin):
        provider = "Acme"
        default_base_url = "https://api.acme.example"

        def client_headers(self) -> Mapping[str, str]:
            return {"Authorization": f"Bearer {self.config['api_key']}"}

        async def send_message(self, message: Message) -> SendResult:
            to = self.phone_number(message.recipient)
            response = await self.request("POST", "/messages", json={"to": to, ...})
            providers.raise_for_status(response, provider=self.provider)
            ...

Config keys it reads, all optional: ``base_url`` (default
``default_base_url``), ``timeout_seconds``, ``default_region`` and
``strict_phone_numbers``; declare the ones a plugin offers in its manifest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from switchboard.sdk import providers
from switchboard.sdk._plugin import MessagingPlugin


class HttpProviderPlugin(MessagingPlugin):
    """A messaging plugin that delivers through one provider's HTTP API.

    Set ``provider`` (its name in error messages) and ``default_base_url``;
    override ``client_headers`` or ``client_auth`` for credentials. Call
    ``self.request(...)`` to send and ``self.phone_number(...)`` for
    recipients. A subclass that overrides ``validate_config``, ``initialize``
    or ``cleanup`` calls ``super()``'s.
    """

    #: The provider's name, as error messages show it ("Twilio").
    provider: str = "the provider"
    #: The API root when ``config.base_url`` is not set; empty for plugins given full URLs.
    default_base_url: str = ""

    def validate_config(self) -> None:
        if "default_region" in self.config:
            self.config["default_region"] = providers.validate_region(self.config["default_region"])

    def base_url(self) -> str:
        """The root every relative request URL is joined to."""
        return str(self.config.get("base_url", self.default_base_url))

    def client_headers(self) -> Mapping[str, str]:
        """Headers sent with every request (credentials, API versions)."""
        return {}

    def client_auth(self) -> tuple[str, str] | None:
        """HTTP Basic credentials for every request, if the provider uses them."""
        return None

    async def initialize(self) -> None:
        self.http = providers.http_client(
            base_url=self.base_url(),
            timeout=self.config.get("timeout_seconds"),
            headers=self.client_headers(),
            auth=self.client_auth(),
        )

    async def cleanup(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        files: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request to the provider (``providers.send_request``): its answer, whatever
        the status, or the typed error for an exchange that got none."""
        return await providers.send_request(
            self.http,
            method,
            url,
            provider=self.provider,
            json=json,
            data=data,
            content=content,
            files=files,
            params=params,
            headers=headers,
        )

    def phone_number(self, number: str, *, field: str = "recipient") -> str:
        """``number`` in E.164, read with ``config.default_region`` and
        ``config.strict_phone_numbers`` (``providers.normalize_phone_number``)."""
        return providers.normalize_phone_number(
            number,
            default_region=self.config.get("default_region"),
            strict=bool(self.config.get("strict_phone_numbers", False)),
            field=field,
        )
