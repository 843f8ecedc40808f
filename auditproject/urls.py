from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

handler400 = "auditproject.body_limits.bad_request"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/audit/", include("audit.api.urls")),
    path("api/rbac/", include("rbac.api.urls")),
    path("api/", include("locks.api.urls")),
    path("api/lfs/", include("locks.lfs.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path(
        "api/redoc",
        SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"),
        name="api-redoc",
    ),
]
