"""Everything that writes the foundation's tables: projects, members, API keys, activity.

Data, impulse, job and deployment services live in their own modules (services_*.py) beside this one.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import secrets
from .models import ROLE_RANK, Activity, ApiKey, KeyRole, Membership, Project, Role

User = get_user_model()

PROJECT_NAME_MAX = 100


class ServiceError(Exception):
    """A request the domain refuses; `status` is the HTTP status an endpoint answers with."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Actor:
    """Who does something: a signed-in user or an API key (for the activity log)."""

    user: object | None = None
    api_key: ApiKey | None = None

    @property
    def display(self) -> str:
        if self.api_key is not None:
            return f"key {self.api_key.name}"
        return getattr(self.user, "username", "system") if self.user is not None else "system"


def activity_log(*, project: Project, actor: Actor | None, verb: str, **detail) -> Activity:
    actor = actor or Actor()
    user = actor.user if getattr(actor.user, "pk", None) else None
    return Activity.objects.create(project=project, actor=user, api_key=actor.api_key, verb=verb, detail=detail)


def validate_project_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError("project name must not be empty", field="name")
    if len(name) > PROJECT_NAME_MAX:
        raise ServiceError(f"project name is {len(name)} characters; at most {PROJECT_NAME_MAX}", field="name")
    if any(ord(c) < 32 for c in name):
        raise ServiceError("project name must not contain control characters", field="name")
    return name


@transaction.atomic
def project_create(*, owner, name: str, description: str = "", kind: str = "") -> Project:
    project = Project.objects.create(
        name=validate_project_name(name),
        description=description or "",
        kind=kind or "",
        created_by=owner,
        hmac_key_encrypted=secrets.encrypt(secrets.new_hmac_key()),
    )
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    activity_log(project=project, actor=Actor(user=owner), verb="project.created", name=project.name)
    return project


@transaction.atomic
def project_update(*, project: Project, actor: Actor, name: str | None = None, description: str | None = None,
                   require_signed: bool | None = None) -> Project:
    changed = {}
    if name is not None:
        project.name = validate_project_name(name)
        changed["name"] = project.name
    if description is not None:
        project.description = description
        changed["description"] = True
    if require_signed is not None:
        project.require_signed = bool(require_signed)
        changed["require_signed"] = project.require_signed
    project.save()
    activity_log(project=project, actor=actor, verb="project.updated", **changed)
    return project


def project_delete(*, project: Project) -> None:
    """Delete a project with all its rows and stored files."""
    from .storage import delete_project_files

    project_id = project.id
    with transaction.atomic():
        project.delete()
    transaction.on_commit(lambda: delete_project_files(project_id))


def project_hmac_key(project: Project) -> str:
    return secrets.decrypt(project.hmac_key_encrypted)


@transaction.atomic
def project_hmac_key_rotate(*, project: Project, actor: Actor) -> str:
    key = secrets.new_hmac_key()
    project.hmac_key_encrypted = secrets.encrypt(key)
    project.save(update_fields=["hmac_key_encrypted"])
    activity_log(project=project, actor=actor, verb="hmac_key.rotated")
    return key


def _check_role(role: str) -> str:
    if role not in Role.values:
        raise ServiceError(f"unknown role '{role}'; choose one of {', '.join(Role.values)}", field="role")
    return role


def _owner_count(project: Project) -> int:
    return Membership.objects.filter(project=project, role=Role.OWNER).count()


@transaction.atomic
def member_invite(*, project: Project, actor: Actor, username_or_email: str, role: str) -> Membership:
    _check_role(role)
    who = (username_or_email or "").strip()
    if not who:
        raise ServiceError("give the username or e-mail of the user to invite", field="user")
    user = User.objects.filter(Q(username=who) | (Q(email__iexact=who) & ~Q(email=""))).first()
    if user is None:
        raise ServiceError(f"no user '{who}'; they must sign up first", status=404, field="user")
    if Membership.objects.filter(project=project, user=user).exists():
        raise ServiceError(f"'{user.username}' is already a member of this project", status=409, field="user")
    if role == Role.OWNER and not _actor_is_owner(project, actor):
        raise ServiceError("only an owner can make another owner", status=403, field="role")
    membership = Membership.objects.create(project=project, user=user, role=role)
    activity_log(project=project, actor=actor, verb="member.invited", user=user.username, role=role)
    return membership


def _actor_is_owner(project: Project, actor: Actor) -> bool:
    if actor.user is None or not getattr(actor.user, "pk", None):
        return False
    return Membership.objects.filter(project=project, user=actor.user, role=Role.OWNER).exists()


@transaction.atomic
def member_set_role(*, project: Project, actor: Actor, membership: Membership, role: str) -> Membership:
    _check_role(role)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if (membership.role == Role.OWNER or role == Role.OWNER) and not _actor_is_owner(project, actor):
        raise ServiceError("only an owner can change an owner's role or make an owner", status=403, field="role")
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(project) <= 1:
        raise ServiceError("the last owner cannot be demoted; make another member owner first", status=409)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    activity_log(project=project, actor=actor, verb="member.role_changed", user=membership.user.username,
                 old=old, new=role)
    return membership


@transaction.atomic
def member_remove(*, project: Project, actor: Actor, membership: Membership) -> None:
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Role.OWNER:
        if _owner_count(project) <= 1:
            raise ServiceError("the last owner cannot be removed; make another member owner first", status=409)
        if not _actor_is_owner(project, actor):
            raise ServiceError("only an owner can remove an owner", status=403)
    username = membership.user.username
    membership.delete()
    activity_log(project=project, actor=actor, verb="member.removed", user=username)


@transaction.atomic
def api_key_create(*, project: Project, actor: Actor, name: str, role: str) -> tuple[ApiKey, str]:
    """Create a key; the full key is returned once and only its hash is stored."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("API key name must not be empty", field="name")
    if len(name) > 100:
        raise ServiceError("API key name is longer than 100 characters", field="name")
    if role not in KeyRole.values:
        raise ServiceError(f"unknown key role '{role}'; choose one of {', '.join(KeyRole.values)}", field="role")
    full, prefix, digest = secrets.new_api_key()
    key = ApiKey.objects.create(project=project, name=name, role=role, prefix=prefix, key_hash=digest,
                                created_by=actor.user if getattr(actor.user, "pk", None) else None)
    activity_log(project=project, actor=actor, verb="api_key.created", name=name, role=role, prefix=prefix)
    return key, full


@transaction.atomic
def api_key_revoke(*, project: Project, actor: Actor, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        activity_log(project=project, actor=actor, verb="api_key.revoked", name=key.name, prefix=key.prefix)
    return key


class ApiKeyError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def api_key_authenticate(raw_key: str | None) -> ApiKey:
    """Find the live key for a presented secret, or raise ApiKeyError saying why not."""
    if not raw_key:
        raise ApiKeyError("missing API key (send it in the x-api-key header)")
    prefix = secrets.split_api_key(raw_key.strip())
    if prefix is None:
        raise ApiKeyError("invalid API key")
    key = ApiKey.objects.select_related("project").filter(prefix=prefix).first()
    if key is None or not secrets.constant_time_equal(key.key_hash, secrets.hash_api_key(raw_key.strip())):
        raise ApiKeyError("invalid API key")
    if key.revoked_at is not None:
        raise ApiKeyError("API key has been revoked")
    now = timezone.now()
    # Write last-used at most once a minute, so a streaming device does not write on every request.
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def role_at_least(role: str, needed: str) -> bool:
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]
