"""JSON API of the data set: list/filter, summary, one sample (read, edit, delete, its values and
files), crop, split, bulk actions, browser upload, and zip export/import (thin: parse, call, serialize)."""
from __future__ import annotations

import tempfile

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from workers.ml import samples as canonical

from . import selectors_samples as selectors
from . import services_samples as services
from .access import project_access
from .api import parse
from .ingestion import IngestionError
from .models import Category, Role, Sample
from .services import ServiceError

MAX_PAGE = 1000


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "request body is over the size limit"


class RawFileParser(BaseParser):
    """The body as bytes, whatever its content type (a sample file sent as it is).

    DRF parses the body as soon as the CSRF check looks at POST; without this parser a CSV or WAV
    body would be refused as an unsupported media type before the view runs.
    """

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.STUDIO_MAX_SAMPLE_BYTES
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:
            raise PayloadTooLarge(f"file is over the limit of {limit} bytes")
        return data


class ZipStreamParser(BaseParser):
    """The body copied in chunks to a spooled temporary file (zips may exceed the in-memory limit)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = services._max_import_bytes()
        spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - the view closes it
        total = 0
        while stream is not None and (chunk := stream.read(1024 * 1024)):
            total += len(chunk)
            if total > limit:
                spool.close()
                raise PayloadTooLarge(f"zip is over the limit of {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
        return spool


class SampleSerializer(serializers.ModelSerializer):
    uploader = serializers.CharField(source="uploader.username", default=None, read_only=True)
    device = serializers.CharField(source="device.device_id", default=None, read_only=True)

    class Meta:
        model = Sample
        fields = ["id", "file_name", "category", "label", "kind", "sensors", "interval_ms", "value_count",
                  "duration_ms", "width", "height", "sha256", "device", "device_name", "device_type", "uploader",
                  "upload_source", "metadata", "enabled", "signed", "created_at"]
        read_only_fields = fields


class SamplePageSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    results = SampleSerializer(many=True)


class SampleUpdateSerializer(serializers.Serializer):
    label = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1000)
    category = serializers.CharField(required=False)
    enabled = serializers.BooleanField(required=False)
    file_name = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1000)
    metadata = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)


class CropSerializer(serializers.Serializer):
    start_ms = serializers.FloatField()
    end_ms = serializers.FloatField()


class SplitSerializer(serializers.Serializer):
    length_ms = serializers.FloatField()


class BulkSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), max_length=100_000)
    action = serializers.ChoiceField(choices=services.BULK_ACTIONS)
    label = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1000)
    category = serializers.CharField(required=False)


def _int(value, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value)))
    except (TypeError, ValueError):
        return default


def _sample(access, sample_id: int) -> Sample:
    return get_object_or_404(Sample.objects.select_related("project", "uploader", "device"), pk=sample_id,
                             project=access.project)


LIST_PARAMS = [
    OpenApiParameter("label", str, description="exact label; empty for unlabelled samples"),
    OpenApiParameter("category", str, enum=Category.values),
    OpenApiParameter("device", str, description="device name"),
    OpenApiParameter("q", str, description="text in file name, label or device"),
    OpenApiParameter("kind", str, enum=["time-series", "audio", "image"]),
    OpenApiParameter("enabled", bool),
    OpenApiParameter("ordering", str, description=f"one of {', '.join(selectors.ORDERINGS)}, '-' for descending"),
    OpenApiParameter("limit", int), OpenApiParameter("offset", int),
]


class SampleListApi(APIView):
    @extend_schema(parameters=LIST_PARAMS, responses=SamplePageSerializer, summary="The data set, filtered and paged",
                   operation_id="samples_list")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        p = request.query_params
        enabled = {"true": True, "1": True, "false": False, "0": False}.get(p.get("enabled", "").lower())
        rows = selectors.samples_filtered(
            access.project, label=p.get("label"), category=p.get("category") or None,
            device=p.get("device") or None, q=p.get("q") or None, kind=p.get("kind") or None, enabled=enabled,
            ordering=p.get("ordering") or "-created_at")
        limit = _int(p.get("limit"), 50, 1, MAX_PAGE)
        offset = _int(p.get("offset"), 0, 0, 10**9)
        page = rows[offset:offset + limit]
        return Response({"count": rows.count(), "limit": limit, "offset": offset,
                         "results": SampleSerializer(page, many=True).data})


class SampleSummaryApi(APIView):
    @extend_schema(responses=dict, summary="Per-label counts and durations, totals, devices, train/test ratio")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        return Response(selectors.dataset_summary(access.project))


class SampleDetailApi(APIView):
    @extend_schema(responses=SampleSerializer, summary="One sample", operation_id="sample_retrieve")
    def get(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id)
        return Response(SampleSerializer(_sample(access, sample_id)).data)

    @extend_schema(request=SampleUpdateSerializer, responses=SampleSerializer,
                   summary="Relabel, move, enable/disable, rename a sample")
    def patch(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        sample = _sample(access, sample_id)
        data = parse(SampleUpdateSerializer, request)
        sample = services.sample_update(sample=sample, actor=access.actor, **data)
        return Response(SampleSerializer(sample).data)

    @extend_schema(responses={204: None}, summary="Delete a sample and its files")
    def delete(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        services.sample_delete(sample=_sample(access, sample_id), actor=access.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SampleDataApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("max_points", int)], responses=dict,
                   summary="The sample's values per axis for a chart (min/max reduced when long)")
    def get(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id)
        sample = _sample(access, sample_id)
        return Response(selectors.sample_chart(sample, max_points=_int(request.query_params.get("max_points"),
                                                                        4000, 16, selectors.MAX_CHART_POINTS)))


class SampleFileApi(APIView):
    @extend_schema(parameters=[OpenApiParameter("as", str, enum=["raw", "json", "wav", "png"])],
                   responses={(200, "application/octet-stream"): bytes},
                   summary="The sample as a file: raw (as uploaded), json (EI format), wav (audio), png (image)")
    def get(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id)
        sample = _sample(access, sample_id)
        # "as", not "format": DRF keeps ?format= for choosing its renderer.
        fmt = request.query_params.get("as", "raw")
        stem = sample.file_name.rsplit(".", 1)[0] if "." in sample.file_name else sample.file_name
        if fmt == "raw" and not sample.raw_path:
            # Made by a crop, split or stream: no upload to give back, so give the stored data.
            fmt = "png" if sample.kind == "image" else "json"
        if fmt == "raw":
            from .storage import read_bytes

            try:
                data = read_bytes(sample.raw_path)
            except OSError as exc:
                raise ServiceError(f"the raw file of sample {sample.id} cannot be read: {exc}", status=500) from exc
            ext = sample.raw_path.rsplit(".", 1)[-1]
            return _download(data, f"{stem}.{ext}", "application/octet-stream")
        payload = services.sample_payload(sample)
        if fmt == "png" and isinstance(payload, canonical.Image):
            return _download(canonical.encode(payload), f"{stem}.png", "image/png", inline=True)
        if fmt == "wav" and isinstance(payload, canonical.TimeSeries):
            try:
                return _download(canonical.to_wav(payload), f"{stem}.wav", "audio/wav", inline=True)
            except canonical.SampleError as exc:
                raise ServiceError(str(exc)) from exc
        if fmt == "json" and isinstance(payload, canonical.TimeSeries):
            import json

            document = canonical.to_ei_json(payload, sample.device_name or None, sample.device_type or "")
            return _download(json.dumps(document).encode(), f"{stem}.json", "application/json")
        raise ServiceError(f"'{fmt}' is not available for a {sample.kind} sample", field="as")


def _download(data: bytes, name: str, content_type: str, inline: bool = False) -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    safe = name.replace('"', "").replace("\\", "")
    response["Content-Disposition"] = f'{"inline" if inline else "attachment"}; filename="{safe}"'
    return response


class SampleCropApi(APIView):
    @extend_schema(request=CropSerializer, responses=SampleSerializer, summary="Keep a time range of a sample")
    def post(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        sample = _sample(access, sample_id)
        data = parse(CropSerializer, request)
        sample = services.sample_crop(sample=sample, actor=access.actor, **data)
        return Response(SampleSerializer(sample).data)


class SampleSplitApi(APIView):
    @extend_schema(request=SplitSerializer, responses={201: SampleSerializer(many=True)},
                   summary="Split a sample into windows of a fixed length (the original is replaced)")
    def post(self, request, project_id: int, sample_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        sample = _sample(access, sample_id)
        data = parse(SplitSerializer, request)
        created = services.sample_split(sample=sample, actor=access.actor, **data)
        return Response(SampleSerializer(created, many=True).data, status=status.HTTP_201_CREATED)


class SampleBulkApi(APIView):
    @extend_schema(request=BulkSerializer, responses=dict,
                   summary="Relabel, move, enable, disable or delete the selected samples")
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        data = parse(BulkSerializer, request)
        count = services.samples_bulk(project=access.project, actor=access.actor, **data)
        return Response({"count": count})


class SampleUploadApi(APIView):
    """The browser's upload: one file per request as the raw body (so each has its own progress bar).

    Query: category (training, testing, anomaly, split), file_name, label (absent: from the file name),
    no_label=1. The body is parsed like the ingestion API's (EI JSON/CBOR, CSV, WAV, JPEG, PNG).
    """

    parser_classes = [RawFileParser]

    @extend_schema(
        parameters=[OpenApiParameter("category", str, enum=list(services.UPLOAD_CATEGORIES)),
                    OpenApiParameter("file_name", str), OpenApiParameter("label", str),
                    OpenApiParameter("no_label", bool)],
        request={"application/octet-stream": bytes}, responses={201: SampleSerializer},
        summary="Upload one file from the browser")
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        p = request.query_params
        category = p.get("category", "training")
        label = p.get("label")
        options = services.UploadOptions(
            category=category, label=label if label not in (None, "") else None,
            no_label=p.get("no_label") in ("1", "true"), upload_source="browser")
        limit = settings.STUDIO_MAX_SAMPLE_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > limit:
                raise IngestionError(f"file is {declared} bytes, over the limit of {limit}", status=413)
            if category not in services.UPLOAD_CATEGORIES:
                raise IngestionError(f"unknown category '{category}'")
            body = request.data if isinstance(request.data, bytes) else b""
            sample = services.upload_ingest(project=access.project, actor=access.actor, data=body,
                                            file_name=p.get("file_name") or None,
                                            content_type=request.content_type, options=options)
        except IngestionError as exc:
            raise ServiceError(exc.message, status=exc.status) from exc
        return Response(SampleSerializer(sample).data, status=status.HTTP_201_CREATED)


class DatasetExportApi(APIView):
    @extend_schema(responses={(200, "application/zip"): bytes},
                   summary="The data set as a zip of EI JSON (time series, audio) and PNG (images) + info.labels")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        # FileResponse closes the file once it is sent, so no context manager here.
        out = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115
        services.dataset_export(project=access.project, out=out)
        out.seek(0)
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in access.project.name)[:60] or "project"
        return FileResponse(out, as_attachment=True, filename=f"{name}-data.zip", content_type="application/zip")


class DatasetImportApi(APIView):
    parser_classes = [ZipStreamParser]

    @extend_schema(request={"application/zip": bytes}, responses={201: dict},
                   summary="Import a zip (as exported, or folders training/testing/anomaly of sample files)")
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.EDITOR)
        spool = request.data
        if not hasattr(spool, "read"):
            raise ServiceError("send the zip file as the request body", field="file")
        with spool:
            result = services.dataset_import(project=access.project, actor=access.actor, data=spool)
        return Response({"count": len(result.samples), "skipped": result.skipped,
                         "samples": SampleSerializer(result.samples[:1000], many=True).data},
                        status=status.HTTP_201_CREATED)
