"""URL patterns of the interceptor role: one push endpoint per event name."""

from django.urls import path

from events.kinds import EventKind
from interceptor.views import push_endpoint

urlpatterns = [path(event, push_endpoint(event), name=event) for event in EventKind]
