"""URL patterns of the connector role."""

from django.urls import path, re_path

from connector import demo, integration_key_views, views
from connector.dialogflow_proxy import views as dialogflow_proxy_views

urlpatterns = [
    path("", demo.demo_page, name="demo-page"),
    path("status", views.status, name="status"),
    path("register", views.register, name="register"),
    path("register-app", views.register_app, name="register-app"),
    path("conversation-name", integration_key_views.conversation_name, name="conversation-name"),
    # Everything under /v2/ and /v2beta1/ goes to the proxy, which applies the route table itself.
    re_path(r"^v2(?:beta1)?/", dialogflow_proxy_views.proxy, name="dialogflow-proxy"),
]
