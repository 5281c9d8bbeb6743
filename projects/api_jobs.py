"""JSON API of the impulse, jobs and trained models (thin: parse, call a service, serialize)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from workers.ml.pipeline import describe_blocks
from workers.progress import job_state

from . import services_impulse, services_jobs, services_training
from .access import object_access, project_access
from .models import Job, Role, TrainedModel
from .services import ServiceError


def job_body(job: Job, *, with_log: bool = True) -> dict:
    body = job_state(job) | {
        "project": job.project_id,
        "params": job.params,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "impulse_version": job.impulse.version if job.impulse_id and job.impulse else None,
        "snapshot_size": len(job.snapshot or []),
        "created_by": job.created_by.username if job.created_by_id and job.created_by else None,
    }
    if with_log:
        body["log"] = job.log
    return body


class JobStartSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["features", "train", "test"])
    model_id = serializers.IntegerField(required=False)
    threshold = serializers.FloatField(required=False, min_value=0, max_value=1)


class ProjectJobsApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, summary="The project's jobs, newest first (?kind=train)"
    )
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        kind = request.query_params.get("kind") or None
        jobs = services_jobs.jobs_for_project(access.project, kind=kind)
        return Response([job_body(j, with_log=False) for j in jobs])

    @extend_schema(
        request=JobStartSerializer,
        responses={202: OpenApiTypes.OBJECT},
        summary="Start a job: features, train or test",
    )
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        if not isinstance(request.data, dict):
            raise ServiceError('send a JSON object like {"kind": "train"}')
        serializer = JobStartSerializer(data=request.data)
        if not serializer.is_valid():
            field, errors = next(iter(serializer.errors.items()))
            raise ServiceError(f"{field}: {' '.join(str(e) for e in errors)}", field=field)
        data = dict(serializer.validated_data)
        kind = data.pop("kind")
        job = services_training.job_start(
            project=access.project, actor=access.actor, kind=kind, params=data
        )
        return Response(job_body(job), status=status.HTTP_202_ACCEPTED)


class JobDetailApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="A job: status, progress, log, result")
    def get(self, request, job_id: int):
        job, _ = object_access(request, Job, job_id)
        return Response(job_body(job))


class JobCancelApi(APIView):
    @extend_schema(
        request=None,
        responses=OpenApiTypes.OBJECT,
        summary="Cancel a queued or running job (409 when it has finished)",
    )
    def post(self, request, job_id: int):
        job, access = object_access(request, Job, job_id, Role.EDITOR)
        job = services_jobs.job_cancel(job=job, actor=access.actor)
        return Response(job_body(job))


class ImpulseApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="The current impulse (version, spec), the data's axes and the blocks to choose from",
    )
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        row = services_impulse.impulse_current(access.project)
        return Response(
            {
                "version": row.version if row else None,
                "spec": row.spec if row else services_impulse.default_spec(access.project),
                "saved": row is not None,
                "axes": services_impulse.project_axes(access.project) or [],
                "blocks": describe_blocks(str(settings.STUDIO_PRETRAINED_DIR)),
            }
        )

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses=OpenApiTypes.OBJECT,
        summary="Replace the impulse (a changed spec becomes a new version)",
    )
    def put(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        spec = (
            request.data.get("spec", request.data)
            if isinstance(request.data, dict)
            else request.data
        )
        row, created = services_impulse.impulse_save(
            project=access.project, actor=access.actor, spec=spec
        )
        return Response(
            {"version": row.version, "spec": row.spec, "created": created, "saved": True}
        )


def model_body(m: TrainedModel, *, full: bool = True) -> dict:
    body = {
        "id": m.id,
        "project": m.project_id,
        "job": m.job_id,
        "impulse_version": m.impulse.version if m.impulse_id and m.impulse else None,
        "learn_block": m.learn_block,
        "labels": m.labels,
        "created_at": m.created_at.isoformat(),
        "accuracy": m.metrics.get("accuracy"),
        "loss": m.metrics.get("loss"),
        "anomaly_threshold": (m.anomaly or {}).get("threshold"),
        "test_accuracy": (m.test_results or {}).get("accuracy"),
    }
    if full:
        body |= {
            "metrics": m.metrics,
            "history": m.history,
            "misclassified": m.misclassified,
            "settings": m.settings,
            "snapshot_size": len(m.snapshot or []),
            "test_results": m.test_results,
            "anomaly": {
                k: v
                for k, v in (m.anomaly or {}).items()
                if k in ("threshold", "clusters", "inputs")
            }
            or None,
        }
    return body


class TrainedModelListApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Trained models, newest first")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        models = TrainedModel.objects.filter(project=access.project).select_related("impulse")[:100]
        return Response([model_body(m, full=False) for m in models])


class TrainedModelDetailApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="A trained model: metrics, confusion matrix, curves, misclassified windows, test results",
    )
    def get(self, request, model_id: int):
        model, _ = object_access(request, TrainedModel, model_id)
        return Response(model_body(model))


class FeaturesApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="The latest successful feature generation of the current impulse (explorer points)",
    )
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        row = services_impulse.impulse_current(access.project)
        job = services_training.features_done(access.project, row) if row else None
        if job is None:
            return Response(
                {
                    "job": None,
                    "impulse_version": row.version if row else None,
                    "explorer": None,
                    "detail": "no features generated for the current impulse",
                }
            )
        return Response({"job": job.id, "impulse_version": row.version, **job.result})
