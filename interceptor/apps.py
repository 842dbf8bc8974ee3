"""App config for the interceptor role."""

from django.apps import AppConfig


class InterceptorConfig(AppConfig):
    name = "interceptor"
    verbose_name = "Interceptor"
