"""The admin of roles, groups and users. Every change goes through the audited services (see rbac.forms), so an
admin edit leaves exactly the entries an API call leaves."""

import copy
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.contrib.admin.utils import model_ngettext, unquote
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, QuerySet
from django.forms import ModelMultipleChoiceField
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils.translation import gettext_lazy
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from audit import tokens
from audit.admin_text import text_column
from audit.text import printable

from . import services
from .forms import DeletionForm, GroupForm, RoleForm, UserCreateForm, UserForm, UserPasswordForm
from .models import GroupScope, Role

User = get_user_model()


def _as_confirmation(request: HttpRequest) -> HttpRequest:
    """The request as the GET that shows a delete confirmation page: Django's views delete on any POST."""
    confirmation = copy.copy(request)
    confirmation.method = "GET"
    confirmation.POST = QueryDict()
    return confirmation


class SavedByServicesMixin(admin.ModelAdmin):
    """The forms saved through the services while validating; the admin's own save hooks must write nothing."""

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        # Already saved by the form's services; obj.save() would write the row again, unaudited.
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # form.save_m2m() would write the many-to-many fields unaudited: the services set them.
        pass

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # A read-only viewer has nothing to give a reason for.
        without_reason = [
            (name, {**opts, "fields": [f for f in opts["fields"] if f != "reason"]}) for name, opts in fieldsets
        ]
        return [(name, opts) for name, opts in without_reason if opts["fields"]]


class DeletedByServiceMixin(admin.ModelAdmin):
    """Single and bulk deletion through a deletion service, with the reason asked on the confirmation page."""

    delete_confirmation_template = "admin/rbac/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/rbac/delete_selected_confirmation.html"
    # Replaces the site-wide delete_selected, which deletes with queryset.delete(), unaudited.
    actions = ["delete_selected"]

    def reason_required_to_delete(self, obj: Any) -> str:
        """Why a reason is required to delete ``obj`` (the deletion service's rule), or "" when none is."""
        raise NotImplementedError

    def delete_with_service(self, actor: Any, obj: Any, reason: str) -> None:
        raise NotImplementedError

    def deletion_form(self, request: HttpRequest, objs: list[Any], bound: bool) -> DeletionForm:
        whys = [why for why in map(self.reason_required_to_delete, objs) if why]
        data = request.POST if bound else None
        return DeletionForm(data, reason_required=bool(whys), why=whys[0] if whys else "")

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        obj = self.get_object(request, unquote(object_id))
        form = self.deletion_form(request, [obj] if obj is not None else [], bound=request.method == "POST")
        if form.is_bound and not form.is_valid():
            # Nothing is deleted: the confirmation page again, with the reason's error.
            request = _as_confirmation(request)
        return super().delete_view(request, object_id, {**(extra_context or {}), "deletion_form": form})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # delete_view validated the reason against the service's rule before Django's view got here.
        self.delete_with_service(request.user, obj, request.POST.get("reason", "").strip())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(permissions=["delete"], description=gettext_lazy("Delete selected %(verbose_name_plural)s"))
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        objs = list(queryset)
        form = self.deletion_form(request, objs, bound="post" in request.POST)
        if not form.is_valid():
            # Django's confirmation page (related objects, protection), with the reason field added.
            response = admin_actions.delete_selected(self, _as_confirmation(request), queryset)
            response.context_data["deletion_form"] = form
            return response
        deleted = []
        for obj in objs:
            # One service call, one entry per object; a refusal names the object and the others go ahead.
            try:
                self.delete_with_service(request.user, obj, form.cleaned_data["reason"])
                deleted.append(obj)
            except (PermissionDenied, ValidationError) as error:
                text = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
                self.message_user(request, f"{obj} was not deleted: {text}", messages.ERROR)
        if deleted:
            self.log_deletions(request, deleted)
            count = len(deleted)
            items = model_ngettext(self.opts, count)
            self.message_user(request, f"Deleted {count} {items}.", messages.SUCCESS)
        return None


@admin.register(Role)
class RoleAdmin(SavedByServicesMixin, DeletedByServiceMixin):
    form = RoleForm
    list_display = ("name_text", "privileged", "description_text", "permission_count")
    list_filter = ("privileged",)
    search_fields = ("name",)
    fields = ("name", "description", "privileged", "permissions", "reason")
    filter_horizontal = ("permissions",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(permission_count=Count("permissions", distinct=True))

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> ModelMultipleChoiceField:
        if db_field.name == "permissions":
            # Each permission's label names its content type: one join instead of a query per permission.
            kwargs["queryset"] = db_field.remote_field.model.objects.select_related("content_type")
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    name_text = text_column("name", sortable=True)
    description_text = text_column("description")

    @admin.display(description="permissions", ordering="permission_count")
    def permission_count(self, role: Role) -> int:
        return role.permission_count

    def reason_required_to_delete(self, role: Role) -> str:
        return f"{role.name} is a privileged role" if role.privileged else ""

    def delete_with_service(self, actor: Any, role: Role, reason: str) -> None:
        services.role_delete(actor=actor, role_id=role.pk, reason=reason)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(SavedByServicesMixin, DeletedByServiceMixin):
    """Groups with their roles, members and branch scope. The groups' own Django permissions are not offered: roles
    are the way rights are given."""

    form = GroupForm
    list_display = ("name_text", "roles", "member_count")
    search_fields = ("name",)
    ordering = ("name",)
    fields = ("name", "roles", "members", "branch_scope", "reason")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request).prefetch_related("rbac_roles")
        return queryset.annotate(member_count=Count("user", distinct=True))

    # Named as the form's fields: a read-only viewer sees these in their place.
    name_text = text_column("name", sortable=True)

    @admin.display(description="roles")
    def roles(self, group: Group) -> str:
        return printable(", ".join(role.name for role in group.rbac_roles.all())) or "—"

    @admin.display(description="members")
    def members(self, group: Group) -> str:
        return printable(", ".join(group.user_set.order_by("username").values_list("username", flat=True))) or "—"

    @admin.display(description="branch scope")
    def branch_scope(self, group: Group) -> str:
        scope = GroupScope.objects.filter(group=group).values_list("branch_scope", flat=True).first()
        return ", ".join(map(str, scope["allow"])) if scope and scope.get("allow") else "—"

    @admin.display(description="members", ordering="member_count")
    def member_count(self, group: Group) -> int:
        return group.member_count

    def reason_required_to_delete(self, group: Group) -> str:
        gives_privileged = services.privileged_roles_change(group.rbac_roles.all(), [])
        return (
            f"{group.name} gives its members a privileged role" if gives_privileged and group.user_set.exists() else ""
        )

    def delete_with_service(self, actor: Any, group: Group, reason: str) -> None:
        services.group_delete(actor=actor, group_id=group.pk, reason=reason)


admin.site.unregister(User)


@admin.register(User)
class UserAdmin(SavedByServicesMixin, auth_admin.UserAdmin):
    """Django's user admin, saving through the services. Direct user permissions are not offered (roles are the
    way rights are given), and accounts are deactivated, never deleted."""

    form = UserForm
    add_form = UserCreateForm
    change_password_form = UserPasswordForm
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Rights", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "roles")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
        ("Why", {"fields": ("reason",)}),
    )
    # Not in USER_FIELDS: no service changes them.
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ("groups",)
    # Django's only action is delete_selected, and users are not deleted.
    actions = None

    # Named as the form's field: a read-only viewer sees this in its place.
    @admin.display(description="roles")
    def roles(self, user: Any) -> str:
        return ", ".join(user.rbac_roles.values_list("name", flat=True)) or "—"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # No service deletes a user: the audit trail keeps referring to them. Deactivate instead.
        return False


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class AuditedTokenAdmin(TokenAdmin):
    """DRF's token admin, with issue and revoke going through the audited services (never the token itself)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # A token belongs to one user for good: handing it to another would be a second, unrecorded issue.
        return ("user",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: TokenProxy, form: Any, change: bool) -> None:
        if change:
            return
        tokens.token_create(actor=request.user, user_id=obj.user_id)
        obj.key = TokenProxy.objects.values_list("key", flat=True).get(user_id=obj.user_id)

    def delete_model(self, request: HttpRequest, obj: TokenProxy) -> None:
        tokens.token_delete(actor=request.user, user_id=obj.user_id)
