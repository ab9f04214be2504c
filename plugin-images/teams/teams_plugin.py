"""Microsoft Teams through a Workflows (Power Automate) webhook, as an Adaptive Card.

``Send`` posts the Workflows "post to a channel when a webhook request is
received" payload::

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "contentUrl": null,
                      "content": {"type": "AdaptiveCard", "version": "1.4", ...}}]}

The card is built from the subject (a bold heading) and the content (a
wrapped text block; Adaptive Cards render a Markdown subset), or is metadata
``card``, a whole Adaptive Card as JSON, passed through unchanged. Teams
answers 202 Accepted (older connectors 200); the workflow run id
(``x-ms-workflow-run-id``) is the provider message id when present, else the
plugin makes one up. The webhook decides the channel, so the recipient is
only recorded. See docs/plugins/teams.md.
"""

from __future__ import annotations

from typing import Any, Final

from switchboard.sdk import InvalidInput, Message, MessagingPlugin, SendResult, providers

PROVIDER: Final = "Teams"
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION: Final = "1.4"


class TeamsPlugin(MessagingPlugin):
    """Posts Adaptive Cards to a Teams channel through a Workflows webhook."""

    channel_type = "teams"
    capabilities = ("send", "adaptive_cards")

    async def initialize(self) -> None:
        self._http = providers.http_client(timeout=self.config.get("timeout_seconds"))

    async def cleanup(self) -> None:
        await self._http.aclose()

    async def send_message(self, message: Message) -> SendResult:
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
        response = await providers.send_request(
            self._http, "POST", self.config["webhook_url"], provider=PROVIDER, json=payload
        )
        providers.raise_for_status(response, provider=PROVIDER)
        run_id = response.headers.get("x-ms-workflow-run-id")
        return SendResult(
            run_id or providers.generated_message_id("teams"),
            details={"status": str(response.status_code), "recipient": message.recipient},
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
