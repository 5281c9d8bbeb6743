"""Who may see and change a project: membership for users, the key's project and role for API keys.

An outsider (no membership, or a key of another project) gets 404 so that project ids leak nothing;
a member whose role is too low gets 403.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import ApiKey, Membership, Project, Role
from .services import Actor, role_at_least


@dataclass(frozen=True)
class Access:
    project: Project
    role: str
    actor: Actor

    def can(self, needed: str) -> bool:
        return role_at_least(self.role, needed)


def project_access(request, project_id: int, need: str = Role.VIEWER) -> Access:
    key = getattr(request, "auth", None)
    if isinstance(key, ApiKey):
        return key_access(key, project_id, need)
    user = getattr(request, "user", None)
    return user_access(user, project_id, need)


def user_access(user, project_id: int, need: str = Role.VIEWER) -> Access:
    if user is None or not user.is_authenticated or not getattr(user, "pk", None):
        raise Http404("no such project")
    membership = (
        Membership.objects.select_related("project").filter(project_id=project_id, user=user).first()
    )
    if membership is None:
        raise Http404("no such project")
    if not role_at_least(membership.role, need):
        raise PermissionDenied(f"your role '{membership.role}' may not do this; it needs '{need}' or higher")
    return Access(project=membership.project, role=membership.role, actor=Actor(user=user))


def key_access(key: ApiKey, project_id: int, need: str = Role.VIEWER) -> Access:
    if key.project_id != int(project_id):
        raise Http404("no such project")
    if not role_at_least(key.role, need):
        raise PermissionDenied(f"this API key's role '{key.role}' may not do this; it needs '{need}' or higher")
    return Access(project=key.project, role=key.role, actor=Actor(api_key=key))


def object_access(request, model, object_id: int, need: str = Role.VIEWER, **filters):
    """Load a row that belongs to a project (job, model, deployment...) and check its project."""
    obj = model.objects.select_related("project").filter(pk=object_id, **filters).first()
    if obj is None:
        raise Http404(f"no such {model._meta.verbose_name}")
    access = project_access(request, obj.project_id, need)
    return obj, access
