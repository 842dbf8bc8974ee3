"""The event core both roles share: event kinds, conversation names, the bounded history, publishing.

The interceptor publishes through ``events.publish``; the connector's
consumers receive what it sends. This package imports neither role (an
import-linter contract in ``pyproject.toml`` keeps it so).
"""
