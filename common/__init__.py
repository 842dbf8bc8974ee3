"""Small helpers every part of the service shares; imports nothing of the project's own."""
