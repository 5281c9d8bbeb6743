"""Websocket URL routes (protocols documented in projects/consumers.py and docs/device-protocol.md)."""
from django.urls import path

from projects import consumers, device_consumer, live_classification

websocket_urlpatterns = [
    path("ws/device", device_consumer.DeviceConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/events", consumers.ProjectEventsConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/devices/<int:device_pk>/live", consumers.DeviceLiveConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>", consumers.JobConsumer.as_asgi()),
    path("ws/projects/<int:project_id>/live-classification/<int:device_pk>",
         live_classification.LiveClassifyConsumer.as_asgi()),
]
