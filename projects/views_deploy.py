"""HTML pages of deployment (build + bundles), a trained model (optimization table) and uploaded models."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from . import services_byom, services_deploy
from .access import user_access
from .api_jobs import job_body, model_body
from .models import DeploymentTarget, Job, Role, TrainedModel, UploadedModel


def _context(request, project_id: int, **extra) -> dict:
    access = user_access(request.user, project_id, Role.VIEWER)
    return {
        "project": access.project,
        "access": access,
        "role": access.role,
        "can_edit": access.can(Role.EDITOR),
        **extra,
    }


def _models(project) -> list[dict]:
    rows = (
        TrainedModel.objects.filter(project=project)
        .exclude(keras_path="")
        .select_related("impulse")[:50]
    )
    return [
        model_body(m, full=False) | {"has_variants": bool((m.variants or {}).get("variants"))}
        for m in rows
    ]


def _running(project, kind: str) -> dict | None:
    job = Job.objects.filter(project=project, kind=kind, status__in=("queued", "running")).first()
    return job_body(job, with_log=False) if job else None


@login_required
def deployment(request, project_id: int):
    ctx = _context(request, project_id)
    project = ctx["project"]
    ctx.update(
        {
            "models": _models(project),
            "targets": [{"value": t.value, "label": t.label} for t in DeploymentTarget],
            "deployments": [
                services_deploy.deployment_body(d)
                for d in services_deploy.deployments_for_project(project)
            ],
            "running_job": _running(project, "deploy"),
        }
    )
    return render(request, "deploy/deployment.html", ctx)


@login_required
def model_page(request, project_id: int, model_id: int):
    ctx = _context(request, project_id)
    model = (
        TrainedModel.objects.filter(project=ctx["project"], pk=model_id)
        .select_related("impulse")
        .first()
    )
    if model is None:
        raise Http404("no such model")
    optimize_job = Job.objects.filter(
        project=ctx["project"], kind="optimize", params__model_id=model.id
    ).first()
    ctx.update(
        {
            "model": model,
            "model_data": model_body(model, full=False),
            "variants": model.variants or {},
            "variant_rows": _variant_rows(model.variants or {}),
            "optimize_job": job_body(optimize_job, with_log=False) if optimize_job else None,
            "deployments": [
                services_deploy.deployment_body(d)
                for d in services_deploy.deployments_for_project(ctx["project"], model_id=model.id)
            ],
        }
    )
    return render(request, "deploy/model.html", ctx)


def _variant_rows(variants: dict) -> list[dict]:
    rows = []
    for name in services_deploy.VARIANTS:
        r = (variants.get("variants") or {}).get(name)
        if r:
            rows.append(
                {
                    "name": name,
                    **r,
                    "accuracy_text": _percent(r.get("accuracy")),
                    "latency_host_text": _duration(r.get("latency_host_ms")),
                    "latency_m4_text": _duration(r.get("latency_m4_ms")),
                }
            )
    return rows


def _percent(v) -> str:
    return "" if v is None else f"{100 * v:.1f} %"


def _duration(ms) -> str:
    if ms is None:
        return ""
    return f"{ms * 1000:.1f} µs" if ms < 0.1 else f"{ms:.3f} ms"


@login_required
def byom(request, project_id: int):
    ctx = _context(request, project_id)
    rows = UploadedModel.objects.filter(project=ctx["project"]).select_related(
        "job", "uploaded_by"
    )[:100]
    ctx.update(
        {
            "uploads": [services_byom.uploaded_model_body(r) for r in rows],
            "max_bytes": services_byom.max_model_bytes(),
        }
    )
    return render(request, "deploy/byom.html", ctx)


@login_required
def uploaded_model(request, project_id: int, upload_id: int):
    ctx = _context(request, project_id)
    row = (
        UploadedModel.objects.filter(project=ctx["project"], pk=upload_id)
        .select_related("job")
        .first()
    )
    if row is None:
        raise Http404("no such uploaded model")
    ctx.update(
        {
            "upload": row,
            "upload_data": services_byom.uploaded_model_body(row),
            "job_data": job_body(row.job, with_log=False) if row.job_id and row.job else None,
        }
    )
    return render(request, "deploy/uploaded_model.html", ctx)
