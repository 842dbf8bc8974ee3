"""URL patterns of the connector role."""

from django.urls import path

from connector import views

urlpatterns = [
    path("status", views.status, name="status"),
    path("register", views.register, name="register"),
    path("register-app", views.register_app, name="register-app"),
]
