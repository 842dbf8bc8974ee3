"""Root URLconf: the HTTP routes of the role this process serves (``SERVICE_ROLE``)."""

from django.conf import settings
from django.urls import include, path

ROLE_URLCONFS = {
    "connector": ["connector.urls"],
    "interceptor": ["interceptor.urls"],
    "all": ["connector.urls", "interceptor.urls"],
}

urlpatterns = [path("", include(module)) for module in ROLE_URLCONFS[settings.SERVICE_ROLE]]
