"""Operator tooling for Google Cloud: the deployment plan and the commands that set up Dialogflow and Pub/Sub.

Run by an operator (``manage.py deploy_plan``, ``configure_conversation_profile``, ``create_push_subscriptions``),
never by a serving process: no role imports it.
"""
