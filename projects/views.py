"""HTML pages of the foundation: sign-up, dashboard, project overview, members, API keys, settings."""
from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import selectors, services, services_wizard
from .access import user_access
from .models import ApiKey, KeyRole, Membership, Role


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False)

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=1000, required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


@login_required
@require_http_methods(["GET", "POST"])
def dashboard(request):
    form = ProjectForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            project = services_wizard.project_create_guided(
                owner=request.user, name=form.cleaned_data["name"], description=form.cleaned_data["description"],
                kind=request.POST.get("kind", ""))
            return redirect(services_wizard.landing_url(project))
        except services.ServiceError as exc:
            form.add_error("name", exc.message)
            status = 400
    projects, roles = selectors.projects_for_user(request.user)
    rows = [{"project": p, "role": roles[p.id]} for p in projects]
    return render(request, "projects/dashboard.html", {"rows": rows, "form": form,
                                                       "kinds": services_wizard.KINDS.values(),
                                                       "kind": request.POST.get("kind", "")}, status=status)


def _page(request, project_id: int, template: str, need: str = Role.VIEWER, **context):
    access = user_access(request.user, project_id, need)
    context.update({"project": access.project, "access": access, "role": access.role,
                    "can_edit": access.can(Role.EDITOR), "can_admin": access.can(Role.ADMIN)})
    return render(request, template, context, status=context.pop("status", 200))


@login_required
def project_overview(request, project_id: int):
    access = user_access(request.user, project_id)
    return _page(request, project_id, "projects/overview.html",
                 activities=selectors.activity_for(access.project, limit=50),
                 members=selectors.members_of(access.project))


@login_required
@require_http_methods(["GET", "POST"])
def members(request, project_id: int):
    status = 200
    if request.method == "POST":
        access = user_access(request.user, project_id, Role.ADMIN)
        action = request.POST.get("action", "invite")
        try:
            if action == "invite":
                services.member_invite(project=access.project, actor=access.actor,
                                       username_or_email=request.POST.get("user", ""),
                                       role=request.POST.get("role", ""))
                messages.success(request, f"Invited {request.POST.get('user')}.")
            else:
                membership = get_object_or_404(Membership, pk=request.POST.get("member"), project=access.project)
                if action == "role":
                    services.member_set_role(project=access.project, actor=access.actor, membership=membership,
                                             role=request.POST.get("role", ""))
                    messages.success(request, f"{membership.user.username} is now {request.POST.get('role')}.")
                elif action == "remove":
                    services.member_remove(project=access.project, actor=access.actor, membership=membership)
                    messages.success(request, f"Removed {membership.user.username}.")
            return redirect("members", project_id=project_id)
        except services.ServiceError as exc:
            messages.error(request, exc.message)
            status = exc.status
    access = user_access(request.user, project_id)
    return _page(request, project_id, "projects/members.html", members=selectors.members_of(access.project),
                 roles=Role.choices, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request, project_id: int):
    access = user_access(request.user, project_id, Role.ADMIN)
    new_key = None
    status = 200
    if request.method == "POST":
        try:
            if request.POST.get("action") == "revoke":
                key = get_object_or_404(ApiKey, pk=request.POST.get("key"), project=access.project)
                services.api_key_revoke(project=access.project, actor=access.actor, key=key)
                messages.success(request, f"Revoked key {key.name}.")
                return redirect("api-keys-page", project_id=project_id)
            if request.POST.get("action") == "rotate-hmac":
                services.project_hmac_key_rotate(project=access.project, actor=access.actor)
                messages.success(request, "New HMAC key generated.")
                return redirect("api-keys-page", project_id=project_id)
            _, new_key = services.api_key_create(project=access.project, actor=access.actor,
                                                 name=request.POST.get("name", ""), role=request.POST.get("role", ""))
        except services.ServiceError as exc:
            messages.error(request, exc.message)
            status = exc.status
    return _page(request, project_id, "projects/keys.html", Role.ADMIN, keys=access.project.api_keys.all(),
                 key_roles=KeyRole.choices, new_key=new_key, hmac_key=services.project_hmac_key(access.project),
                 status=status)


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request, project_id: int):
    status = 200
    if request.method == "POST":
        access = user_access(request.user, project_id, Role.ADMIN)
        try:
            services.project_update(project=access.project, actor=access.actor, name=request.POST.get("name"),
                                    description=request.POST.get("description"),
                                    require_signed=request.POST.get("require_signed") == "on")
            messages.success(request, "Settings saved.")
            return redirect("project-settings", project_id=project_id)
        except services.ServiceError as exc:
            messages.error(request, exc.message)
            status = exc.status
    return _page(request, project_id, "projects/settings.html", status=status)


@login_required
@require_POST
def project_delete(request, project_id: int):
    access = user_access(request.user, project_id, Role.OWNER)
    if request.POST.get("confirm") != access.project.name:
        messages.error(request, "Type the project's name to confirm deletion.")
        return redirect("project-settings", project_id=project_id)
    services.project_delete(project=access.project)
    messages.success(request, "Project deleted.")
    return redirect("dashboard")
