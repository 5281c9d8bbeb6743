"""Websocket consumers for browsers: a job's live progress and a project's events.

Protocol (server → browser, JSON text frames):
  {"type": "state", "job": {...}}            full state, sent on connect and on every status change
  {"type": "progress", "progress": 0.4, "message": "...", "log": "...", "metrics": {...}}
Close codes: 4401 not signed in, 4404 no such job/project (or not a member).
Device websockets are a separate protocol (projects/device_consumer.py, docs/device-protocol.md).
"""
from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .consumer_resilience import ResilientChannelReceive
from .models import Job, Membership

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _job_state_for(user, job_id: int) -> dict | None:
    from workers.progress import job_state

    job = Job.objects.filter(pk=job_id).first()
    if job is None or not Membership.objects.filter(project_id=job.project_id, user=user).exists():
        return None
    return job_state(job)


@database_sync_to_async
def _is_member(user, project_id: int) -> bool:
    return Membership.objects.filter(project_id=project_id, user=user).exists()


async def _refuse(consumer, code: int) -> None:
    # Accept first: a close before accept is an HTTP 403 at the handshake, and the client never sees the code.
    await consumer.accept()
    await consumer.close(code=code)


class JobConsumer(ResilientChannelReceive, AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        self.job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        self.group = None
        if user is None or not user.is_authenticated:
            await _refuse(self, CLOSE_UNAUTHENTICATED)
            return
        state = await _job_state_for(user, self.job_id)
        if state is None:
            await _refuse(self, CLOSE_NOT_FOUND)
            return
        self.group = f"job-{self.job_id}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # Read again after joining the group, so no event between the read and the join is missed.
        await self.send_json({"type": "state", "job": await _job_state_for(user, self.job_id)})

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_event(self, message):
        await self.send_json(message["event"])


class ProjectEventsConsumer(ResilientChannelReceive, AsyncJsonWebsocketConsumer):
    """Project-wide events (new samples, devices online/offline, remote sampling steps)."""

    async def connect(self):
        user = self.scope.get("user")
        self.project_id = int(self.scope["url_route"]["kwargs"]["project_id"])
        self.group = None
        if user is None or not user.is_authenticated:
            await _refuse(self, CLOSE_UNAUTHENTICATED)
            return
        if not await _is_member(user, self.project_id):
            await _refuse(self, CLOSE_NOT_FOUND)
            return
        self.group = f"project-{self.project_id}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "project": self.project_id})

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def project_event(self, message):
        await self.send_json(message["event"])


@database_sync_to_async
def _device_in_project(user, project_id: int, device_pk: int) -> bool:
    from .models import Device

    return (Membership.objects.filter(project_id=project_id, user=user).exists()
            and Device.objects.filter(pk=device_pk, project_id=project_id).exists())


class DeviceLiveConsumer(ResilientChannelReceive, AsyncJsonWebsocketConsumer):
    """A browser watching a device's data live. While it watches, it reminds the device's session
    every few seconds (device.watch), so a device nobody watches sends no live traffic at all."""

    WATCH_EVERY_S = 4

    async def connect(self):
        import asyncio

        user = self.scope.get("user")
        kwargs = self.scope["url_route"]["kwargs"]
        self.project_id, self.device_pk = int(kwargs["project_id"]), int(kwargs["device_pk"])
        self.group = None
        if user is None or not user.is_authenticated:
            await _refuse(self, CLOSE_UNAUTHENTICATED)
            return
        if not await _device_in_project(user, self.project_id, self.device_pk):
            await _refuse(self, CLOSE_NOT_FOUND)
            return
        self.group = f"device-live-{self.device_pk}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.watcher = asyncio.create_task(self._watch())

    async def _watch(self):
        import asyncio

        while True:
            await self.channel_layer.group_send(f"device-{self.device_pk}",
                                                {"type": "device.watch", "seconds": self.WATCH_EVERY_S * 2.5})
            await asyncio.sleep(self.WATCH_EVERY_S)

    async def disconnect(self, code):
        if self.group:
            self.watcher.cancel()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def device_live(self, message):
        await self.send_json({"type": "live", "rows": message["rows"], "interval_ms": message["interval_ms"],
                              "seq": message["seq"]})
