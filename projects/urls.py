"""URL table of the HTML pages (each area's module adds its own list here)."""
from django.contrib.auth import views as auth_views
from django.urls import path

from . import (
    views,
    views_data,
    views_deploy,
    views_device_browser,
    views_devices,
    views_jobs,
    views_live_classification,
)

urlpatterns = [
    path("signup", views.signup, name="signup"),
    path("login", auth_views.LoginView.as_view(), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("", views.dashboard, name="dashboard"),
    path("projects/<int:project_id>/", views.project_overview, name="project"),
    path("projects/<int:project_id>/members", views.members, name="members"),
    path("projects/<int:project_id>/keys", views.api_keys, name="api-keys-page"),
    path("projects/<int:project_id>/settings", views.project_settings, name="project-settings"),
    path("projects/<int:project_id>/delete", views.project_delete, name="project-delete"),
    path("projects/<int:project_id>/devices", views_devices.devices, name="devices"),
    path("projects/<int:project_id>/devices/<int:device_pk>/", views_devices.device_detail, name="device"),
    path("projects/<int:project_id>/devices/this-browser", views_device_browser.this_browser,
         name="device-this-browser"),
    path("projects/<int:project_id>/impulse", views_jobs.impulse, name="impulse"),
    path("projects/<int:project_id>/training", views_jobs.training, name="training"),
    path("projects/<int:project_id>/model-testing", views_jobs.model_testing, name="model-testing"),
    path("projects/<int:project_id>/live-classification", views_live_classification.live_classification,
         name="live-classification"),
    path("projects/<int:project_id>/jobs", views_jobs.jobs, name="jobs"),
    path("projects/<int:project_id>/jobs/<int:job_id>", views_jobs.job, name="job"),
    path("projects/<int:project_id>/deployment", views_deploy.deployment, name="deployment"),
    path("projects/<int:project_id>/models/<int:model_id>/", views_deploy.model_page, name="model"),
    path("projects/<int:project_id>/models/upload", views_deploy.byom, name="byom"),
    path("projects/<int:project_id>/models/upload/<int:upload_id>", views_deploy.uploaded_model,
         name="uploaded-model"),
    path("projects/<int:project_id>/data", views_data.data, name="data"),
    path("projects/<int:project_id>/data/<int:sample_id>", views_data.sample, name="sample"),
]
