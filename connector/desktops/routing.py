"""WebSocket routes of the connector role."""

from django.urls import re_path

from connector.desktops.plain_ws import PlainWebSocketConsumer
from connector.desktops.socketio.consumer import SocketIOConsumer

websocket_urlpatterns = [
    re_path(r"^socket\.io/?$", SocketIOConsumer.as_asgi()),
    re_path(r"^ws/?$", PlainWebSocketConsumer.as_asgi()),
]
