"""URL table of the JSON API under /api/v1/ (each area's module adds its own list here)."""
from django.urls import path

from . import api, api_devices, api_jobs

urlpatterns = [
    path("projects", api.ProjectListApi.as_view(), name="api-projects"),
    path("projects/<int:project_id>", api.ProjectDetailApi.as_view(), name="api-project"),
    path("projects/<int:project_id>/members", api.MemberListApi.as_view(), name="api-members"),
    path("projects/<int:project_id>/members/<int:member_id>", api.MemberDetailApi.as_view(), name="api-member"),
    path("projects/<int:project_id>/keys", api.ApiKeyListApi.as_view(), name="api-keys"),
    path("projects/<int:project_id>/keys/<int:key_id>/revoke", api.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("projects/<int:project_id>/hmac-key", api.HmacKeyApi.as_view(), name="api-hmac-key"),
    path("projects/<int:project_id>/activity", api.ActivityApi.as_view(), name="api-activity"),
    path("projects/<int:project_id>/impulse", api_jobs.ImpulseApi.as_view(), name="api-impulse"),
    path("projects/<int:project_id>/features", api_jobs.FeaturesApi.as_view(), name="api-features"),
    path("projects/<int:project_id>/jobs", api_jobs.ProjectJobsApi.as_view(), name="api-jobs"),
    path("jobs/<int:job_id>", api_jobs.JobDetailApi.as_view(), name="api-job"),
    path("jobs/<int:job_id>/cancel", api_jobs.JobCancelApi.as_view(), name="api-job-cancel"),
    path("projects/<int:project_id>/trained-models", api_jobs.TrainedModelListApi.as_view(), name="api-trained-models"),
    path("trained-models/<int:model_id>", api_jobs.TrainedModelDetailApi.as_view(), name="api-trained-model"),
    path("projects/<int:project_id>/devices", api_devices.DeviceListApi.as_view(), name="api-devices"),
    path("projects/<int:project_id>/devices/<int:device_pk>", api_devices.DeviceDetailApi.as_view(), name="api-device"),
    path("projects/<int:project_id>/devices/<int:device_pk>/sample", api_devices.DeviceSampleApi.as_view(),
         name="api-device-sample"),
    path("projects/<int:project_id>/devices/<int:device_pk>/recording", api_devices.DeviceRecordingApi.as_view(),
         name="api-device-recording"),
]
