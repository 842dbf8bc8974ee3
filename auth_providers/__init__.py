"""Pluggable checks of a desktop's own identity-provider token (``AUTH_OPTION``)."""
