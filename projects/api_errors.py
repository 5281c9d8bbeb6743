"""One error shape for the JSON API: {"detail": "...", "field": "..."} with a 4xx status."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .services import ServiceError


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        return Response(body, status=exc.status)
    if isinstance(exc, Http404):
        return Response({"detail": str(exc) or "not found"}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        return Response({"detail": str(exc) or "permission denied"}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, ValidationError):
        field, message = _first_error(exc.detail)
        body = {"detail": f"{field}: {message}" if field else message, "errors": exc.detail}
        if field:
            body["field"] = field
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


def _first_error(detail, field: str | None = None) -> tuple[str | None, str]:
    """The first field and message of a nested DRF error structure."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else None
            return _first_error(value, ".".join(p for p in (field, name) if p) or None)
        return field, "invalid input"
    if isinstance(detail, list):
        return _first_error(detail[0], field) if detail else (field, "invalid input")
    return field, str(detail)
