"""Root URLconf: the HTTP routes of the role this process serves (``SERVICE_ROLE``)."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from aa_site import admin_static, health, metrics_view

ROLE_URLCONFS = {
    "connector": ["connector.http.urls"],
    "interceptor": ["interceptor.urls"],
    "all": ["connector.http.urls", "interceptor.urls"],
}

# Every role answers the probes of deploy/*.yaml.
HEALTH_URLS = [path("healthz", health.healthz, name="healthz"), path("readyz", health.readyz, name="readyz")]
# Prometheus text for a scraper holding METRICS_TOKEN (404 while it is unset).
METRICS_URLS = [path("metrics", metrics_view.metrics_page, name="metrics")]

# The operators' admin (aa_site/admin_site.py) and its static files, on the roles that serve desktops.
ADMIN_URLS = [
    path("admin/static/<path:path>", admin_static.serve, name="admin-static"),
    path("admin/", admin.site.urls),
]

urlpatterns = HEALTH_URLS + METRICS_URLS + [path("", include(module)) for module in ROLE_URLCONFS[settings.SERVICE_ROLE]]
if settings.SERVICE_ROLE != "interceptor":
    urlpatterns += ADMIN_URLS

# JSON {"message"} instead of Django's HTML pages (aa_site/errors.py).
handler400 = "aa_site.errors.bad_request"
handler403 = "aa_site.errors.permission_denied"
handler404 = "aa_site.errors.not_found"
handler500 = "aa_site.errors.server_error"
