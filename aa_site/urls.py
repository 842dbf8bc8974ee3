"""Root URLconf: the HTTP routes of the role this process serves (``SERVICE_ROLE``)."""

from django.conf import settings
from django.urls import include, path

from aa_site import health

ROLE_URLCONFS = {
    "connector": ["connector.urls"],
    "interceptor": ["interceptor.urls"],
    "all": ["connector.urls", "interceptor.urls"],
}

# Every role answers the probes of deploy/*.yaml.
HEALTH_URLS = [path("healthz", health.healthz, name="healthz"), path("readyz", health.readyz, name="readyz")]

urlpatterns = HEALTH_URLS + [path("", include(module)) for module in ROLE_URLCONFS[settings.SERVICE_ROLE]]
