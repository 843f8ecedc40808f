"""Shapes of the rbac API. Input serializers check types only; names, ids, codes and reasons are the services'."""

from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from ..models import Role
from ..scope import validate_branch_scope
from ..services import permission_codes

# --- input ----------------------------------------------------------------------------------------------------------


def _reason() -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Why. Required when a privileged role is granted, removed or changed.",
    )


def _ids(help_text: str, **kwargs: Any) -> serializers.ListField:
    return serializers.ListField(child=serializers.IntegerField(), help_text=help_text, **kwargs)


class BranchScopeField(serializers.JSONField):
    """``{"allow": [unique positive ints]}``, checked by the same rule the services apply (``rbac.scope``)."""

    def to_internal_value(self, data: Any) -> dict[str, list[int]]:
        value = super().to_internal_value(data)
        try:
            return validate_branch_scope(value)
        except DjangoValidationError as exc:
            # The rule reports under "branch_scope"; unwrap it so the error is not nested under the field twice.
            raise serializers.ValidationError(exc.message_dict["branch_scope"]) from exc


class RoleCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(required=False, allow_blank=True, default="")
    privileged = serializers.BooleanField(required=False, default=False)
    permissions = serializers.ListField(
        child=serializers.CharField(), required=False, default=list, help_text='["app_label.codename", ...]'
    )
    reason = _reason()


class RoleUpdateInputSerializer(serializers.Serializer):
    """Only the fields present are changed."""

    name = serializers.CharField(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    privileged = serializers.BooleanField(required=False)
    reason = _reason()


class RolePermissionsInputSerializer(serializers.Serializer):
    permissions = serializers.ListField(
        child=serializers.CharField(), allow_empty=True, help_text='The complete new set: ["app_label.codename", ...]'
    )
    reason = _reason()


class ReasonInputSerializer(serializers.Serializer):
    reason = _reason()


class UserRolesInputSerializer(serializers.Serializer):
    roles = _ids("The complete new set of role ids.", allow_empty=True)
    reason = _reason()


class GroupCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField()
    roles = _ids("Role ids the members get.", required=False, default=list)
    branch_scope = BranchScopeField(required=False, help_text='{"allow": [branch ids]}; none allowed if omitted.')
    reason = _reason()


class GroupUpdateInputSerializer(serializers.Serializer):
    """Only the fields present are changed; ``roles`` replaces the whole set."""

    name = serializers.CharField(required=False)
    roles = _ids("The complete new set of role ids.", required=False)
    reason = _reason()


class GroupMembersInputSerializer(serializers.Serializer):
    members = _ids("The complete new set of user ids.", allow_empty=True)
    reason = _reason()


class GroupScopeInputSerializer(serializers.Serializer):
    branch_scope = BranchScopeField(help_text='{"allow": [branch ids]}')
    reason = _reason()


# --- output ---------------------------------------------------------------------------------------------------------


class RoleOutputSerializer(serializers.ModelSerializer):
    permissions = serializers.SerializerMethodField()

    class Meta:
        model = Role
        fields = ["id", "name", "description", "privileged", "permissions", "created_at", "updated_at"]
        read_only_fields = fields

    def get_permissions(self, role: Role) -> list[str]:
        # .all() so that a prefetch (with its content types) is used.
        return permission_codes(role.permissions.all())


class RoleRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class GroupOutputSerializer(serializers.ModelSerializer):
    roles = RoleRefSerializer(source="rbac_roles", many=True)
    members = UserRefSerializer(source="user_set", many=True)
    branch_scope = serializers.SerializerMethodField(
        help_text="null when the group has no scope yet (a group made outside these services)."
    )

    class Meta:
        model = Group
        fields = ["id", "name", "roles", "members", "branch_scope"]
        read_only_fields = fields

    def get_branch_scope(self, group: Group) -> dict[str, Any] | None:
        try:
            return group.scope.branch_scope
        except ObjectDoesNotExist:
            return None


class UserRolesOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = RoleRefSerializer(source="rbac_roles", many=True)
