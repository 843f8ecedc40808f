from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from audit.api.mixins import RecordsDeniedAttemptsMixin
from auditproject.parsers import UnicodeJSONParser

from .. import services
from ..models import Role
from . import serializers as s

User = get_user_model()

REASON_PARAMETER = OpenApiParameter(
    "reason", required=False, description="Why; for clients that cannot send a body with DELETE."
)


def roles_queryset() -> QuerySet[Role]:
    return Role.objects.prefetch_related(
        Prefetch("permissions", queryset=Permission.objects.select_related("content_type"))
    )


def groups_queryset() -> QuerySet[Group]:
    return (
        Group.objects.select_related("scope")
        .prefetch_related(
            Prefetch("rbac_roles", queryset=Role.objects.only("id", "name")),
            Prefetch("user_set", queryset=User.objects.only("id", "username").order_by("id")),
        )
        .order_by("name")
    )


def users_queryset() -> QuerySet[Any]:
    return User.objects.prefetch_related(Prefetch("rbac_roles", queryset=Role.objects.only("id", "name")))


class ReadNeedsViewPermission(BasePermission):
    """Reads need the view's ``view_permission``. Writes pass: the service checks the actor's right itself and
    records the refusal under its own action code; refusing here as well would record the attempt twice."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method not in SAFE_METHODS:
            return True
        self.message = f"You need the permission {view.view_permission} to see this."
        return request.user.has_perm(view.view_permission)


class RbacApi(APIView):
    """Any authenticated user may ask for a change: the service checks the right and records the outcome."""

    permission_classes = [IsAuthenticated]
    parser_classes = [UnicodeJSONParser]


class RbacReadApi(RecordsDeniedAttemptsMixin, RbacApi):
    """Reads need ``view_permission``; a refused read is recorded as ACCESS.DENIED on ``denied_entity``."""

    permission_classes = [IsAuthenticated, ReadNeedsViewPermission]
    view_permission = ""


def _valid(serializer_class: type[Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _delete_reason(request: Request) -> str:
    # A JSON body if there is one, else ?reason= (some clients and proxies drop the body of a DELETE).
    return _valid(s.ReasonInputSerializer, request.data or request.query_params)["reason"]


# --- roles ----------------------------------------------------------------------------------------------------------


class RoleListApi(RbacReadApi):
    view_permission = "rbac.view_role"
    denied_entity = "Role"

    @extend_schema(summary="List roles", responses={200: s.RoleOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(s.RoleOutputSerializer(roles_queryset(), many=True).data)

    @extend_schema(
        summary="Create a role", request=s.RoleCreateInputSerializer, responses={201: s.RoleOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        role = services.role_create(actor=request.user, **_valid(s.RoleCreateInputSerializer, request.data))
        return Response(s.RoleOutputSerializer(roles_queryset().get(pk=role.pk)).data, status=status.HTTP_201_CREATED)


class RoleDetailApi(RbacReadApi):
    view_permission = "rbac.view_role"
    denied_entity = "Role"

    @extend_schema(summary="Show a role", responses={200: s.RoleOutputSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.RoleOutputSerializer(get_object_or_404(roles_queryset(), pk=pk)).data)

    @extend_schema(
        summary="Change a role", request=s.RoleUpdateInputSerializer, responses={200: s.RoleOutputSerializer}
    )
    def patch(self, request: Request, pk: int) -> Response:
        role = get_object_or_404(Role, pk=pk)
        services.role_update(actor=request.user, role_id=role.pk, **_valid(s.RoleUpdateInputSerializer, request.data))
        return Response(s.RoleOutputSerializer(roles_queryset().get(pk=role.pk)).data)

    @extend_schema(
        summary="Delete a role", request=s.ReasonInputSerializer, parameters=[REASON_PARAMETER], responses={204: None}
    )
    def delete(self, request: Request, pk: int) -> Response:
        role = get_object_or_404(Role, pk=pk)
        services.role_delete(actor=request.user, role_id=role.pk, reason=_delete_reason(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RolePermissionsApi(RbacApi):
    @extend_schema(
        summary="Replace a role's permissions",
        request=s.RolePermissionsInputSerializer,
        responses={200: s.RoleOutputSerializer},
    )
    def put(self, request: Request, pk: int) -> Response:
        role = get_object_or_404(Role, pk=pk)
        services.role_permissions_replace(
            actor=request.user, role_id=role.pk, **_valid(s.RolePermissionsInputSerializer, request.data)
        )
        return Response(s.RoleOutputSerializer(roles_queryset().get(pk=role.pk)).data)


# --- users ----------------------------------------------------------------------------------------------------------


class UserRolesApi(RbacApi):
    @extend_schema(
        summary="Replace a user's roles",
        request=s.UserRolesInputSerializer,
        responses={200: s.UserRolesOutputSerializer},
    )
    def put(self, request: Request, pk: int) -> Response:
        user = get_object_or_404(User, pk=pk)
        data = _valid(s.UserRolesInputSerializer, request.data)
        services.user_roles_set(actor=request.user, user_id=user.pk, role_ids=data["roles"], reason=data["reason"])
        return Response(s.UserRolesOutputSerializer(users_queryset().get(pk=user.pk)).data)


# --- groups ---------------------------------------------------------------------------------------------------------


class GroupListApi(RbacReadApi):
    view_permission = "auth.view_group"
    denied_entity = "Group"

    @extend_schema(summary="List groups", responses={200: s.GroupOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        return Response(s.GroupOutputSerializer(groups_queryset(), many=True).data)

    @extend_schema(
        summary="Create a group", request=s.GroupCreateInputSerializer, responses={201: s.GroupOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        data = _valid(s.GroupCreateInputSerializer, request.data)
        group = services.group_create(
            actor=request.user,
            name=data["name"],
            role_ids=data["roles"],
            branch_scope=data.get("branch_scope"),
            reason=data["reason"],
        )
        return Response(
            s.GroupOutputSerializer(groups_queryset().get(pk=group.pk)).data, status=status.HTTP_201_CREATED
        )


class GroupDetailApi(RbacReadApi):
    view_permission = "auth.view_group"
    denied_entity = "Group"

    @extend_schema(summary="Show a group", responses={200: s.GroupOutputSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(s.GroupOutputSerializer(get_object_or_404(groups_queryset(), pk=pk)).data)

    @extend_schema(
        summary="Change a group", request=s.GroupUpdateInputSerializer, responses={200: s.GroupOutputSerializer}
    )
    def patch(self, request: Request, pk: int) -> Response:
        group = get_object_or_404(Group, pk=pk)
        data = _valid(s.GroupUpdateInputSerializer, request.data)
        services.group_update(
            actor=request.user,
            group_id=group.pk,
            name=data.get("name"),
            role_ids=data.get("roles"),
            reason=data["reason"],
        )
        return Response(s.GroupOutputSerializer(groups_queryset().get(pk=group.pk)).data)

    @extend_schema(
        summary="Delete a group", request=s.ReasonInputSerializer, parameters=[REASON_PARAMETER], responses={204: None}
    )
    def delete(self, request: Request, pk: int) -> Response:
        group = get_object_or_404(Group, pk=pk)
        services.group_delete(actor=request.user, group_id=group.pk, reason=_delete_reason(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupMembersApi(RbacApi):
    @extend_schema(
        summary="Replace a group's members",
        request=s.GroupMembersInputSerializer,
        responses={200: s.GroupOutputSerializer},
    )
    def put(self, request: Request, pk: int) -> Response:
        group = get_object_or_404(Group, pk=pk)
        data = _valid(s.GroupMembersInputSerializer, request.data)
        services.group_members_set(
            actor=request.user, group_id=group.pk, user_ids=data["members"], reason=data["reason"]
        )
        return Response(s.GroupOutputSerializer(groups_queryset().get(pk=group.pk)).data)


class GroupScopeApi(RbacApi):
    @extend_schema(
        summary="Replace a group's branch scope",
        request=s.GroupScopeInputSerializer,
        responses={200: s.GroupOutputSerializer},
    )
    def put(self, request: Request, pk: int) -> Response:
        group = get_object_or_404(Group, pk=pk)
        services.group_scope_set(
            actor=request.user, group_id=group.pk, **_valid(s.GroupScopeInputSerializer, request.data)
        )
        return Response(s.GroupOutputSerializer(groups_queryset().get(pk=group.pk)).data)
