"""URL patterns of the interceptor role: one push endpoint per event name."""

from django.urls import path

from connector.delivery import EVENT_NAMES
from interceptor.views import push_endpoint

urlpatterns = [path(event, push_endpoint(event), name=event) for event in EVENT_NAMES]
