"""Websocket URL routes (one consumer per protocol, documented in docs/)."""
from django.urls import path

from projects import consumers

websocket_urlpatterns = [
    path("ws/projects/<int:project_id>/events", consumers.ProjectEventsConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>", consumers.JobConsumer.as_asgi()),
]
