"""Devices pages: the list (online, last seen, rename, forget) and a device's page (live chart,
stream recording, remote sampling). Every action calls the JSON API from the page."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import NoReverseMatch, reverse

from . import services_devices
from .access import user_access
from .models import Category, Device, Role


@login_required
def devices(request, project_id: int):
    access = user_access(request.user, project_id)
    return render(request, "devices/list.html", {
        "project": access.project, "role": access.role, "can_edit": access.can(Role.EDITOR),
        "devices": services_devices.devices_for(access.project), "this_browser_url": _this_browser_url(project_id)})


def _this_browser_url(project_id: int) -> str | None:
    try:
        return reverse("device-this-browser", kwargs={"project_id": project_id})
    except NoReverseMatch:
        return None


@login_required
def device_detail(request, project_id: int, device_pk: int):
    access = user_access(request.user, project_id)
    device = get_object_or_404(Device, pk=device_pk, project=access.project)
    return render(request, "devices/detail.html", {
        "project": access.project, "role": access.role, "can_edit": access.can(Role.EDITOR), "device": device,
        "categories": Category.choices,
        "axes": [s["name"] for s in device.stream_sensors] or ["value"]})
