"""Reads for the foundation's pages and API."""
from __future__ import annotations

from .models import Activity, Membership, Project


def projects_for_user(user) -> tuple[list[Project], dict[int, str]]:
    memberships = Membership.objects.filter(user=user).select_related("project").order_by("-project__created_at")
    return [m.project for m in memberships], {m.project_id: m.role for m in memberships}


def members_of(project: Project):
    return Membership.objects.filter(project=project).select_related("user").order_by("user__username")


def activity_for(project: Project, *, limit: int = 50):
    return Activity.objects.filter(project=project).select_related("actor", "api_key")[:limit]
