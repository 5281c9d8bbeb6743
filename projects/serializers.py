"""JSON shapes of the foundation's rows for the API (and its OpenAPI schema)."""
from __future__ import annotations

from rest_framework import serializers

from .models import Activity, ApiKey, Membership, Project


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "description", "kind", "require_signed", "created_at", "role"]
        read_only_fields = ["id", "created_at", "role"]

    def get_role(self, obj) -> str | None:
        return self.context.get("roles", {}).get(obj.id)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=1000)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=["", "motion", "audio", "images", "model"], required=False, default="")


class ProjectUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, max_length=1000)
    description = serializers.CharField(required=False, allow_blank=True)
    require_signed = serializers.BooleanField(required=False)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "created_at"]


class MemberInviteSerializer(serializers.Serializer):
    user = serializers.CharField(help_text="username or e-mail of an existing user", allow_blank=True)
    role = serializers.CharField()


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.CharField()


class ApiKeySerializer(serializers.ModelSerializer):
    revoked = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ["id", "name", "role", "prefix", "created_at", "last_used_at", "revoked_at", "revoked"]

    def get_revoked(self, obj) -> bool:
        return obj.revoked_at is not None


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    role = serializers.CharField()


class ApiKeyCreatedSerializer(ApiKeySerializer):
    api_key = serializers.CharField(read_only=True, help_text="shown once; only its hash is stored")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["api_key"]


class ActivitySerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = Activity
        fields = ["id", "verb", "actor", "detail", "created_at"]

    def get_actor(self, obj) -> str:
        if obj.api_key_id:
            return f"key {obj.api_key.name}"
        return obj.actor.username if obj.actor_id else "system"


class HmacKeySerializer(serializers.Serializer):
    hmac_key = serializers.CharField()
