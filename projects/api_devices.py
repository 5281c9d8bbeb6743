"""JSON API for devices: list, rename, forget, remote sampling, stream recordings."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from . import services_devices as devices
from .access import project_access
from .api import parse
from .models import Device, Role
from .services import ServiceError


class DeviceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = ["id", "device_id", "name", "device_type", "sensors", "connection", "last_seen", "online",
                  "stream_interval_ms", "stream_sensors", "recording", "recording_label", "recording_category",
                  "created_at"]


class DeviceRenameSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)


class SampleRequestSerializer(serializers.Serializer):
    label = serializers.CharField(allow_blank=True)
    length_ms = serializers.IntegerField()
    interval_ms = serializers.FloatField()
    sensor = serializers.CharField()
    category = serializers.CharField(required=False, default="training")


class RecordingSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["start", "stop"])
    label = serializers.CharField(required=False, allow_blank=True, default="")
    category = serializers.CharField(required=False, default="training")


def _device(access, device_pk: int) -> Device:
    return get_object_or_404(Device, pk=device_pk, project=access.project)


class DeviceListApi(APIView):
    @extend_schema(responses=DeviceSerializer(many=True), summary="Devices of the project")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        return Response(DeviceSerializer(devices.devices_for(access.project), many=True).data)


class DeviceDetailApi(APIView):
    @extend_schema(responses=DeviceSerializer, summary="A device")
    def get(self, request, project_id: int, device_pk: int):
        return Response(DeviceSerializer(_device(project_access(request, project_id), device_pk)).data)

    @extend_schema(request=DeviceRenameSerializer, responses=DeviceSerializer, summary="Rename a device")
    def patch(self, request, project_id: int, device_pk: int):
        access = project_access(request, project_id, Role.EDITOR)
        data = parse(DeviceRenameSerializer, request)
        device = devices.device_rename(device=_device(access, device_pk), actor=access.actor, name=data["name"])
        return Response(DeviceSerializer(device).data)

    @extend_schema(responses={204: None}, summary="Forget a device (its samples stay)")
    def delete(self, request, project_id: int, device_pk: int):
        access = project_access(request, project_id, Role.EDITOR)
        devices.device_forget(device=_device(access, device_pk), actor=access.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeviceSampleApi(APIView):
    @extend_schema(request=SampleRequestSerializer, responses={202: dict},
                   summary="Ask a connected device to record a sample (remote sampling)")
    def post(self, request, project_id: int, device_pk: int):
        access = project_access(request, project_id, Role.EDITOR)
        data = parse(SampleRequestSerializer, request)
        result = devices.sample_request(device=_device(access, device_pk), actor=access.actor, **data)
        return Response(result, status=status.HTTP_202_ACCEPTED)


class DeviceRecordingApi(APIView):
    @extend_schema(request=RecordingSerializer, responses=dict,
                   summary="Start or stop recording the device's stream into a labelled sample")
    def post(self, request, project_id: int, device_pk: int):
        access = project_access(request, project_id, Role.EDITOR)
        data = parse(RecordingSerializer, request)
        device = _device(access, device_pk)
        try:
            result = devices.recording_mark(device_pk=device.pk, action=data["action"], label=data["label"],
                                            category=data["category"], actor=access.actor)
        except devices.DeviceProtocolError as exc:
            raise ServiceError(exc.message, status=409) from exc
        return Response(result)


