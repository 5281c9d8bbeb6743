"""JSON API of the foundation: projects, members, API keys, HMAC key, activity (thin: parse, call, serialize)."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .access import project_access
from .models import ApiKey, Membership, Role
from .serializers import (
    ActivitySerializer,
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    HmacKeySerializer,
    MemberInviteSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
)


def parse(serializer_class, request):
    serializer = serializer_class(data=request.data)
    if not serializer.is_valid():
        raise ValidationError(serializer.errors)
    return serializer.validated_data


class ProjectListApi(APIView):
    @extend_schema(responses=ProjectSerializer(many=True), summary="List the projects you are a member of")
    def get(self, request):
        if isinstance(request.auth, ApiKey):
            projects = [request.auth.project]
            roles = {request.auth.project_id: request.auth.role}
        else:
            projects, roles = selectors.projects_for_user(request.user)
        return Response(ProjectSerializer(projects, many=True, context={"roles": roles}).data)

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer}, summary="Create a project")
    def post(self, request):
        if isinstance(request.auth, ApiKey):
            return Response({"detail": "projects are created by users, not API keys"}, status=403)
        data = parse(ProjectCreateSerializer, request)
        project = services.project_create(owner=request.user, **data)
        body = ProjectSerializer(project, context={"roles": {project.id: Role.OWNER}}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    @extend_schema(responses=ProjectSerializer, summary="A project")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        return Response(ProjectSerializer(access.project, context={"roles": {project_id: access.role}}).data)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer, summary="Change a project's settings")
    def patch(self, request, project_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        data = parse(ProjectUpdateSerializer, request)
        project = services.project_update(project=access.project, actor=access.actor, **data)
        return Response(ProjectSerializer(project, context={"roles": {project_id: access.role}}).data)

    @extend_schema(responses={204: None}, summary="Delete a project and all its data")
    def delete(self, request, project_id: int):
        access = project_access(request, project_id, Role.OWNER)
        services.project_delete(project=access.project)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListApi(APIView):
    @extend_schema(responses=MemberSerializer(many=True), summary="Members and their roles")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        return Response(MemberSerializer(selectors.members_of(access.project), many=True).data)

    @extend_schema(request=MemberInviteSerializer, responses={201: MemberSerializer}, summary="Invite a user")
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        data = parse(MemberInviteSerializer, request)
        membership = services.member_invite(project=access.project, actor=access.actor,
                                            username_or_email=data["user"], role=data["role"])
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberDetailApi(APIView):
    @extend_schema(request=MemberRoleSerializer, responses=MemberSerializer, summary="Change a member's role")
    def patch(self, request, project_id: int, member_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        membership = get_object_or_404(Membership, pk=member_id, project=access.project)
        data = parse(MemberRoleSerializer, request)
        membership = services.member_set_role(project=access.project, actor=access.actor, membership=membership,
                                              role=data["role"])
        return Response(MemberSerializer(membership).data)

    @extend_schema(responses={204: None}, summary="Remove a member")
    def delete(self, request, project_id: int, member_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        membership = get_object_or_404(Membership, pk=member_id, project=access.project)
        services.member_remove(project=access.project, actor=access.actor, membership=membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyListApi(APIView):
    @extend_schema(responses=ApiKeySerializer(many=True), summary="API keys (never the secrets)")
    def get(self, request, project_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        return Response(ApiKeySerializer(access.project.api_keys.all(), many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer},
                   summary="Create an API key (the key is shown once)")
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        data = parse(ApiKeyCreateSerializer, request)
        key, full = services.api_key_create(project=access.project, actor=access.actor, **data)
        body = ApiKeySerializer(key).data | {"api_key": full}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(APIView):
    @extend_schema(request=None, responses=ApiKeySerializer, summary="Revoke an API key")
    def post(self, request, project_id: int, key_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        key = get_object_or_404(ApiKey, pk=key_id, project=access.project)
        key = services.api_key_revoke(project=access.project, actor=access.actor, key=key)
        return Response(ApiKeySerializer(key).data)


class HmacKeyApi(APIView):
    @extend_schema(responses=HmacKeySerializer, summary="The HMAC key devices sign data with (admins only)")
    def get(self, request, project_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        return Response({"hmac_key": services.project_hmac_key(access.project)})

    @extend_schema(request=None, responses=HmacKeySerializer, summary="Replace the HMAC key")
    def post(self, request, project_id: int):
        access = project_access(request, project_id, Role.ADMIN)
        return Response({"hmac_key": services.project_hmac_key_rotate(project=access.project, actor=access.actor)})


class ActivityApi(APIView):
    @extend_schema(responses=ActivitySerializer(many=True), summary="The project's activity log, newest first")
    def get(self, request, project_id: int):
        access = project_access(request, project_id)
        return Response(ActivitySerializer(selectors.activity_for(access.project, limit=200), many=True).data)
