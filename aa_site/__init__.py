"""Django project for the Agent Assist integration backend (connector and interceptor roles)."""
