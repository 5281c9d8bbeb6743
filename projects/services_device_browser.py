"""The key a signed-in editor's browser uses to connect as a device (the "this browser" page).

Why a service creates the key instead of asking for one to be pasted: a phone has no easy way to
paste a 45-character secret, and a key per (user, browser) can be revoked alone. Each visit replaces
that browser's previous key, so keys do not pile up; the key is an ingestion key (it can only send data).
"""
from __future__ import annotations

import re

from django.db import transaction

from .models import ApiKey, KeyRole, Project
from .services import Actor, ServiceError, api_key_create, api_key_revoke

_BROWSER_ID = re.compile(r"^[A-Za-z0-9-]{4,40}$")


def browser_key_name(*, username: str, browser_id: str) -> str:
    return f"browser device {browser_id} ({username[:40]})"


def browser_key_issue(*, project: Project, actor: Actor, browser_id: str) -> str:
    """Revoke this browser's previous key (if any) and return a new ingestion key (shown once)."""
    browser_id = (browser_id or "").strip()
    if not _BROWSER_ID.match(browser_id):
        raise ServiceError("browser_id must be 4 to 40 letters, digits or dashes", field="browser_id")
    name = browser_key_name(username=actor.user.get_username(), browser_id=browser_id)
    with transaction.atomic():
        for old in ApiKey.objects.filter(project=project, name=name, revoked_at__isnull=True):
            api_key_revoke(project=project, actor=actor, key=old)
        _, raw = api_key_create(project=project, actor=actor, name=name, role=KeyRole.INGESTION)
    return raw
