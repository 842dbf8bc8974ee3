"""App config of the deployment tooling: installed so ``manage.py`` finds its commands; it serves nothing."""

from django.apps import AppConfig


class DeploymentConfig(AppConfig):
    name = "deployment"
    verbose_name = "Deployment tooling"
