"""Top-level URLs: pages, the JSON API under /api/v1/, the Edge Impulse ingestion paths, health."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from projects import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("projects.api_urls")),
    path("api/", include("projects.ingestion_urls")),
    path("", include("projects.urls")),
]
