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

# JSON {"message"} instead of Django's HTML pages (aa_site/errors.py).
handler400 = "aa_site.errors.bad_request"
handler403 = "aa_site.errors.permission_denied"
handler404 = "aa_site.errors.not_found"
handler500 = "aa_site.errors.server_error"
