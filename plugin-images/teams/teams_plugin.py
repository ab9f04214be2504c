"""Microsoft Teams through a Workflows (Power Automate) webhook, as an Adaptive Card.

``Send`` posts the Workflows "post to a channel when a webhook request is
received" payload::

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "contentUrl": null,
                      "content": {"type": "AdaptiveCard", "version": "1.4", ...}}]}

The card is built from the subject (a bold heading) and the content (a
wrapped text block; Adaptive Cards render a Markdown subset), or is metadata
``card``, a whole Adaptive Card as JSON, passed through unchanged. Workflows
answer 202 Accepted: the flow run was queued, which does not prove the card
was posted. Older (Office 365) connectors answer 200 with the body ``1``
when they posted, and also 200 with a text saying why they did not
(``Microsoft Teams endpoint returned HTTP error 429 ...``); ``outcome_of_body``
reads it. The workflow run id (``x-ms-workflow-run-id``) is the provider
message id when present, else the plugin makes one up. The webhook decides
the channel, so the recipient is only recorded. See docs/plugins/teams.md.
"""

from __future__ import annotations

import re
from typing import Any, Final

import httpx

from switchboard.sdk import (
    HttpProviderPlugin,
    InvalidInput,
    Message,
    OutcomeUnknown,
    PluginError,
    SendResult,
    providers,
)

PROVIDER: Final = "Teams"
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION: Final = "1.4"
#: What a connector answers, in a 200, when it could not post: the status
#: Teams gave it ("Microsoft Teams endpoint returned HTTP error 429 with ContextId ...").
_FAILED_POST: Final = re.compile(r"returned HTTP error (\d{3})")


class TeamsPlugin(HttpProviderPlugin):
    """Posts Adaptive Cards to a Teams channel through a Workflows webhook."""

    channel_type = "teams"
    capabilities = ("send", "adaptive_cards")
    provider = PROVIDER

    async def send_message(self, message: Message) -> SendResult:
        providers.require_capabilities(message, self.capabilities, provider=PROVIDER)
        card = providers.metadata_json(message.metadata, "card")
        if card is None:
            card = adaptive_card(message.subject, message.content)
        elif not (isinstance(card, dict) and card.get("type") == "AdaptiveCard"):
            raise InvalidInput('metadata.card: must be a JSON object with "type": "AdaptiveCard"')
        payload = {
            "type": "message",
            "attachments": [
                {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}
            ],
        }
        response = await self.request("POST", self.config["webhook_url"], json=payload)
        providers.raise_for_status(response, provider=PROVIDER)
        if (failure := outcome_of_body(response)) is not None:
            raise failure
        run_id = response.headers.get("x-ms-workflow-run-id")
        return SendResult(
            run_id or providers.generated_message_id("teams"),
            details={"status": str(response.status_code), "recipient": message.recipient},
        )


def outcome_of_body(response: httpx.Response) -> PluginError | None:
    """The failure a 2xx answer's body reports, or None when it reports a post.

    A Workflows trigger answers 202 (queued; the body says nothing). A
    connector answers 200 with ``1`` when it posted, and 200 with Teams'
    error when it did not: ``... returned HTTP error 429 ...`` is classified as
    that status. Any other body is not an answer this plugin can read, so
    the post may or may not have happened.
    """
    text = " ".join(response.text.split())
    if response.status_code == 202 or text in ("", "1"):
        return None
    detail = text[:300]
    if failed := _FAILED_POST.search(text):
        return providers.error_for_status(
            int(failed.group(1)),
            provider=PROVIDER,
            detail=f"the connector answered HTTP {response.status_code} but did not post: {detail}",
            retry_after=providers.parse_retry_after(response.headers.get("Retry-After")),
        )
    return OutcomeUnknown(
        f"{PROVIDER} answered HTTP {response.status_code} with a body this plugin can't read "
        f"({detail}); the card may or may not have been posted"
    )


def adaptive_card(subject: str, content: str) -> dict[str, Any]:
    """An Adaptive Card 1.4: the subject as a heading, then the content."""
    if not (subject or content):
        raise InvalidInput("content: a Teams message needs a subject, a content or metadata.card")
    body: list[dict[str, Any]] = []
    if subject:
        body.append(
            {
                "type": "TextBlock",
                "text": subject,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            }
        )
    if content:
        body.append({"type": "TextBlock", "text": content, "wrap": True})
    return {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
