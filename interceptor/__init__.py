"""Interceptor role: Pub/Sub push endpoints for Dialogflow notifications."""
