"""URL table of the JSON API under /api/v1/ (each area's module adds its own list here)."""
from django.urls import path

from . import api

urlpatterns = [
    path("projects", api.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>", api.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<int:project_id>/members", api.MemberListApi.as_view(), name="api-members"),
    path("projects/<int:project_id>/members/<int:member_id>", api.MemberDetailApi.as_view(), name="api-member"),
    path("projects/<int:project_id>/keys", api.ApiKeyListApi.as_view(), name="api-keys"),
    path("projects/<int:project_id>/keys/<int:key_id>/revoke", api.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("projects/<int:project_id>/hmac-key", api.HmacKeyApi.as_view(), name="api-hmac-key"),
    path("projects/<int:project_id>/activity", api.ActivityApi.as_view(), name="api-activity"),
]
