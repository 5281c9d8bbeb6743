"""JSON API of deployments, the optimization table and uploaded (bring-your-own) models (thin)."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse
from drf_spectacular.utils import OpenApiTypes, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from workers.ml import byom

from . import services_byom, services_deploy
from .access import object_access, project_access
from .api_jobs import job_body
from .models import Deployment, Role, TrainedModel, UploadedModel
from .services import ServiceError


def _object(request) -> dict:
    if not isinstance(request.data, dict):
        raise ServiceError("send a JSON object")
    return request.data


class DeploymentListApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, summary="Built deployments, newest first (?model=<id>)"
    )
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        model = request.query_params.get("model")
        model_id = int(model) if model and model.isdigit() else None
        rows = services_deploy.deployments_for_project(access.project, model_id=model_id)
        return Response([services_deploy.deployment_body(d) for d in rows])

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={202: OpenApiTypes.OBJECT},
        summary='Build a deployment: {"model": id, "target": "tflite-float" | "tflite-int8" | '
        '"onnx-float" | "onnx-int8" | "arduino" | "cpp"} → the job',
    )
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        data = _object(request)
        job = services_deploy.deployment_start(
            project=access.project,
            actor=access.actor,
            model_id=data.get("model"),
            target=data.get("target"),
        )
        return Response(job_body(job), status=status.HTTP_202_ACCEPTED)


class DeploymentDetailApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="A deployment: file, size, sha256, verification report",
    )
    def get(self, request, deployment_id: int):
        dep, _ = object_access(request, Deployment, deployment_id)
        return Response(services_deploy.deployment_body(dep))


class DeploymentDownloadApi(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        summary="The deployment's file (attachment)",
    )
    def get(self, request, deployment_id: int):
        dep, _ = object_access(request, Deployment, deployment_id)
        try:
            fh = default_storage.open(dep.path, "rb")
        except (FileNotFoundError, OSError):
            raise ServiceError(
                f"the file of deployment {dep.id} is missing from storage", status=410
            ) from None
        content_type = (
            "application/zip" if dep.file_name.endswith(".zip") else "application/octet-stream"
        )
        response = FileResponse(
            fh, as_attachment=True, filename=dep.file_name, content_type=content_type
        )
        response["X-Content-SHA256"] = dep.sha256
        return response


class ModelOptimizeApi(APIView):
    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={202: OpenApiTypes.OBJECT},
        summary='Rebuild the optimization table of a model: {"sparsity": 0.5, "prune_epochs": 10}',
    )
    def post(self, request, model_id: int):
        model, access = object_access(request, TrainedModel, model_id, Role.EDITOR)
        data = request.data if isinstance(request.data, dict) else {}
        job = services_deploy.optimize_start(
            project=access.project,
            actor=access.actor,
            model_id=model.id,
            sparsity=data.get("sparsity", services_deploy.DEFAULT_SPARSITY),
            prune_epochs=data.get("prune_epochs"),
        )
        return Response(job_body(job), status=status.HTTP_202_ACCEPTED)


class ModelVariantsApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        summary="The optimization table: float32 / int8 / pruned / pruned-int8 with how each is measured",
    )
    def get(self, request, model_id: int):
        model, _ = object_access(request, TrainedModel, model_id)
        return Response({"model": model.id, **(model.variants or {})})


UPLOAD_FORM = inline_serializer(
    "UploadedModelForm",
    {
        "file": serializers.FileField(help_text="the model: .tflite, .onnx or .keras"),
        "test_set": serializers.FileField(
            required=False,
            help_text=".npz with x (samples first) and y (class ids or one-hot) for accuracy",
        ),
        "inputs": serializers.FileField(
            required=False,
            help_text=".npz with one array per model input name, first axis = feeds (the same count "
            f"for every input, 1..{byom.MAX_FEEDS}); used for timing and int8 calibration when there "
            "is no test set",
        ),
    },
)


class UploadedModelListApi(APIView):
    parser_classes = (MultiPartParser, FormParser)

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Uploaded models, newest first")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        rows = UploadedModel.objects.filter(project=access.project).select_related(
            "job", "uploaded_by"
        )[:200]
        return Response([services_byom.uploaded_model_body(r) for r in rows])

    @extend_schema(
        request={"multipart/form-data": UPLOAD_FORM},
        responses={202: OpenApiTypes.OBJECT},
        summary="Upload a .tflite/.onnx/.keras model (field 'file', optional .npz 'test_set' with x, y, "
        "optional .npz 'inputs' with one array per input name) and profile it",
    )
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        row = services_byom.uploaded_model_create(
            project=access.project,
            actor=access.actor,
            file=request.FILES.get("file"),
            test_set=request.FILES.get("test_set"),
            inputs=request.FILES.get("inputs"),
        )
        return Response(
            services_byom.uploaded_model_body(row) | {"job": job_body(row.job)},
            status=status.HTTP_202_ACCEPTED,
        )


class UploadedModelDetailApi(APIView):
    @extend_schema(
        responses=OpenApiTypes.OBJECT, summary="An uploaded model and its profile report"
    )
    def get(self, request, upload_id: int):
        row, _ = object_access(request, UploadedModel, upload_id)
        return Response(services_byom.uploaded_model_body(row))

    @extend_schema(responses={204: None}, summary="Delete an uploaded model and its files")
    def delete(self, request, upload_id: int):
        row, access = object_access(request, UploadedModel, upload_id, Role.EDITOR)
        services_byom.uploaded_model_delete(row=row, actor=access.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
