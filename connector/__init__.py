"""Connector role: tokens, WebSocket delivery to agent desktops, desktop-facing HTTP."""
