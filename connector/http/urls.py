"""URL patterns of the connector role (its HTTP half; WebSocket routes are ``connector.desktops.routing``)."""

from django.urls import path, re_path

from connector.http import demo, dialogflow_views, integration_key_views, views

urlpatterns = [
    path("", demo.demo_page, name="demo-page"),
    path("status", views.status, name="status"),
    path("register", views.register, name="register"),
    path("register-app", views.register_app, name="register-app"),
    path("conversation-name", integration_key_views.conversation_name, name="conversation-name"),
    # Everything under /v2/ and /v2beta1/ goes to the proxy, which applies the route table itself.
    re_path(r"^v2(?:beta1)?/", dialogflow_views.proxy, name="dialogflow-proxy"),
]
