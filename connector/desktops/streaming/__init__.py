"""Dialogflow streaming calls over a desktop's socket: the method table, the WebChannel client, the stream registry.

``methods`` says what may be streamed and where (pure), ``webchannel`` speaks
Google's WebChannel (BrowserChannel ``VER=8``) protocol on the pooled
``httpx.AsyncClient``, and ``streams`` keeps one connection's open streams
within their bounds and timeouts. The consumers (``connector.desktops.socketio``,
``connector.desktops.plain_ws``) only translate frames to and from ``streams``.
"""
