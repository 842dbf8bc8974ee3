"""The connector's desktop-facing HTTP API: registration and status, the Dialogflow proxy's views,
conversation-integration keys, the demo page, and the DRF policies they share (``api``: authentication,
rate limits, parsers, errors)."""
