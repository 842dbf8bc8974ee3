"""Connector role, in two halves that never import each other.

``desktops``: everything that holds a desktop connection (the transports, the consumer they share, the
fan-out of events to this process's desktops). ``http``: the desktop-facing HTTP API (registration, the
Dialogflow proxy's views, conversation-integration keys, the demo page). Below both: desktop tokens
(``tokens``) and their signing secret (``jwt_secret``), the shared rate-limit windows (``ratelimit``), and
the Dialogflow upstream (``dialogflow_proxy``: route table, credentials, client), which the proxy's views
and the streaming calls over a desktop's socket both use.
"""
