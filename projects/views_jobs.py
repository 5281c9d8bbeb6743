"""HTML pages of the impulse and its jobs: impulse design (+ feature explorer), training, model testing, jobs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from . import services_impulse, services_jobs, services_training
from .access import user_access
from .api_jobs import job_body, model_body
from .models import Job, Role, TrainedModel


def _page(request, project_id: int, template: str, **context):
    access = user_access(request.user, project_id, Role.VIEWER)
    try:
        data_url = reverse("data", kwargs={"project_id": project_id})
    except NoReverseMatch:
        data_url = ""
    context.update(
        {
            "project": access.project,
            "access": access,
            "role": access.role,
            "can_edit": access.can(Role.EDITOR),
            "data_url": data_url,
        }
    )
    return access, context, template


def _latest_job(project, kind: str) -> dict | None:
    job = (
        Job.objects.filter(project=project, kind=kind)
        .select_related("impulse", "created_by")
        .first()
    )
    return job_body(job) if job else None


@login_required
def impulse(request, project_id: int):
    access, context, template = _page(request, project_id, "projects/impulse.html")
    row = services_impulse.impulse_current(access.project)
    features = services_training.features_done(access.project, row) if row else None
    context.update(
        {
            "features_job": _latest_job(access.project, "features"),
            "features_result": ({"job": features.id, **features.result} if features else None),
        }
    )
    return render(request, template, context)


@login_required
def training(request, project_id: int):
    access, context, template = _page(request, project_id, "projects/training.html")
    model = TrainedModel.objects.filter(project=access.project).select_related("impulse").first()
    context.update(
        {
            "train_job": _latest_job(access.project, "train"),
            "model": model_body(model) if model else None,
        }
    )
    return render(request, template, context)


@login_required
def model_testing(request, project_id: int):
    access, context, template = _page(request, project_id, "projects/model_testing.html")
    model = TrainedModel.objects.filter(project=access.project).select_related("impulse").first()
    context.update(
        {
            "test_job": _latest_job(access.project, "test"),
            "model": model_body(model) if model else None,
        }
    )
    return render(request, template, context)


@login_required
def jobs(request, project_id: int):
    access, context, template = _page(request, project_id, "projects/jobs.html")
    context["jobs"] = services_jobs.jobs_for_project(access.project).select_related("impulse")
    return render(request, template, context)


@login_required
def job(request, project_id: int, job_id: int):
    access, context, template = _page(request, project_id, "projects/job.html")
    row = (
        Job.objects.filter(pk=job_id, project=access.project)
        .select_related("impulse", "created_by")
        .first()
    )
    if row is None:
        raise Http404("no such job")
    context.update({"job": row, "job_data": job_body(row)})
    return render(request, template, context)
