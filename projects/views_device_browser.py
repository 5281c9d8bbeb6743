"""The "this browser" page: a phone or laptop browser becomes a device (accelerometer, microphone,
camera) speaking the same websocket protocol as a board (docs/device-protocol.md)."""
from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from . import services_device_browser
from .access import user_access
from .models import Category, Role
from .services import ServiceError


@login_required
@require_http_methods(["GET", "POST"])
def this_browser(request, project_id: int):
    if request.method == "POST":
        # The page asks for its key with fetch(); an editor gets an ingestion key for this browser.
        access = user_access(request.user, project_id, Role.EDITOR)
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = {}
        try:
            key = services_device_browser.browser_key_issue(
                project=access.project, actor=access.actor,
                browser_id=body.get("browser_id", "") if isinstance(body, dict) else "")
        except ServiceError as exc:
            return JsonResponse({"detail": exc.message, "field": exc.field}, status=exc.status)
        return JsonResponse({"api_key": key})
    access = user_access(request.user, project_id)
    return render(request, "devices/this_browser.html", {
        "project": access.project, "role": access.role, "can_edit": access.can(Role.EDITOR),
        "categories": Category.choices})
