"""JSON API authentication by the `x-api-key` header (the header Edge Impulse devices send)."""
from __future__ import annotations

from rest_framework import authentication, exceptions

from .services import ApiKeyError, api_key_authenticate


class ApiKeyPrincipal:
    """The request's user when it authenticated with an API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, key):
        self.key = key
        self.username = f"key:{key.name}"

    def __str__(self) -> str:
        return self.username


class ApiKeyAuthentication(authentication.BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def authenticate(self, request):
        raw = request.META.get(self.header)
        if raw is None:
            return None
        try:
            key = api_key_authenticate(raw)
        except ApiKeyError as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return "x-api-key"




try:  # describe the scheme in the OpenAPI schema
    from drf_spectacular.extensions import OpenApiAuthenticationExtension

    class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
        target_class = "projects.auth.ApiKeyAuthentication"
        name = "ApiKeyAuth"

        def get_security_definition(self, auto_schema):
            return {"type": "apiKey", "in": "header", "name": "x-api-key"}
except ImportError:  # pragma: no cover
    pass
