"""Building blocks for plugins that deliver through a provider's API.

The plugins in ``plugin-images/`` use these so that every provider fails the
same way and every phone number, email address and header is checked the same
way. A plugin that talks HTTP looks like this::

    from switchboard.sdk import providers

    async def initialize(self) -> None:
        self.http = providers.http_client(base_url=..., timeout=self.config.get("timeout_seconds"))

    async def send_message(self, message: Message) -> SendResult:
        to = providers.normalize_phone_number(message.recipient, default_region="US")
        response = await providers.send_request(self.http, "POST", "/messages", provider="Acme",
                                                json={"to": to, "text": message.content})
        providers.raise_for_status(response, provider="Acme")
        return SendResult(providers.response_json(response, provider="Acme")["id"])

How an HTTP failure is classified (``error_for_status``, ``error_for_transport``),
for every provider unless its plugin documents an exception::

    failure                                  raised                  the router
    request cannot be built (header not      InvalidInput            gives up: nothing was
    ASCII or with a line break, bad URL)                             sent, the message is wrong
    400, 422                                 InvalidInput*           gives up
    401, 403                                 Unauthenticated         flags the credentials
    404, 405, 3xx                            ConfigError             fails over, reports the
                                                                     plugin's URL as broken
    408, 425, 429, 5xx                       RetryableError          fails over, honouring the
                                                                     provider's Retry-After
    any other 4xx                            PermanentError          gives up
    connection refused, connect timeout,     RetryableError          fails over: nothing
    no free connection, TLS handshake                                reached the provider
    read or write timeout, connection        OutcomeUnknown          the channel's delivery
    broken or closed before the answer                               policy decides on a resend

    * or the ``client_error`` class the plugin passes (``PermanentError``)

Messages carry the provider's own words (``"Twilio answered HTTP 400: The 'To'
number ... (code 21211)"``) and never a URL, a credential or the message body.
A failure after the request left is OutcomeUnknown, not RETRYABLE: the provider
may have accepted the message before it went quiet, and sending it through
another plugin may deliver it twice; the channel's delivery policy decides
(at-least-once resends and flags a possible duplicate, at-most-once stops).

Delivery receipts (``MessagingPlugin.handle_receipt``): a plugin checks its
provider's callback with its own secret before it believes a word of it:
``hmac_digest``/``hmac_hex`` and ``signatures_match`` (constant time) for HMAC schemes,
``check_timestamp`` where the signature covers a timestamp (a replay after
``DEFAULT_RECEIPT_TOLERANCE_SECONDS`` is refused), ``load_ecdsa_public_key``
and ``ecdsa_signature_valid`` for public-key schemes, ``verify_webhook`` for
Switchboard's own scheme (``sign_webhook``). Each failure is ``Unauthenticated``
and its message never holds a secret or the signature.

Phone numbers need ``phonenumbers``, email addresses ``email-validator`` and
ECDSA keys ``cryptography`` (the ``plugins`` extra, or the plugin image's
``requirements.txt``); each is imported on first use so that a plugin which
needs none of them doesn't install them.

One module per job, every name importable from this package: ``http`` (the
client, ``send_request``), ``errors`` (statuses, responses and transport
failures as ``PluginError``s, ``Retry-After``), ``messages`` (capabilities,
metadata JSON, a message in parts, generated ids), ``phone``, ``email``
(addresses, bodies, headers), ``text`` (HTML to text) and ``signatures``.
"""

from __future__ import annotations

from switchboard.sdk.providers.email import (
    RESERVED_EMAIL_HEADERS,
    EmailAddress,
    EmailBodies,
    email_bodies,
    metadata_headers,
    parse_email_address,
    parse_email_addresses,
)
from switchboard.sdk.providers.errors import (
    error_for_response,
    error_for_status,
    error_for_transport,
    parse_retry_after,
    raise_for_status,
    response_detail,
    response_json,
)
from switchboard.sdk.providers.http import (
    DEFAULT_TIMEOUT_SECONDS,
    USER_AGENT,
    http_client,
    send_request,
)
from switchboard.sdk.providers.messages import (
    generated_message_id,
    metadata_json,
    require_capabilities,
    result_of_parts,
)
from switchboard.sdk.providers.phone import normalize_phone_number, validate_region
from switchboard.sdk.providers.signatures import (
    DEFAULT_RECEIPT_TOLERANCE_SECONDS,
    check_timestamp,
    ecdsa_signature_valid,
    hmac_digest,
    hmac_hex,
    load_ecdsa_public_key,
    sign_webhook,
    signatures_match,
    verify_webhook,
)
from switchboard.sdk.providers.text import html_to_text

__all__ = [
    "DEFAULT_RECEIPT_TOLERANCE_SECONDS",
    "DEFAULT_TIMEOUT_SECONDS",
    "RESERVED_EMAIL_HEADERS",
    "USER_AGENT",
    "EmailAddress",
    "EmailBodies",
    "check_timestamp",
    "ecdsa_signature_valid",
    "email_bodies",
    "error_for_response",
    "error_for_status",
    "error_for_transport",
    "generated_message_id",
    "hmac_digest",
    "hmac_hex",
    "html_to_text",
    "http_client",
    "load_ecdsa_public_key",
    "metadata_headers",
    "metadata_json",
    "normalize_phone_number",
    "parse_email_address",
    "parse_email_addresses",
    "parse_retry_after",
    "raise_for_status",
    "require_capabilities",
    "response_detail",
    "response_json",
    "result_of_parts",
    "send_request",
    "sign_webhook",
    "signatures_match",
    "validate_region",
    "verify_webhook",
]
