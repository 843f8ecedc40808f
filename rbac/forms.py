"""The admin's forms for roles, groups, users and passwords. They save through the audited services only.

Why the services are called while the form validates, not in ``save()``: a service may still refuse (a missing
reason, a right the actor does not hold, a name taken meanwhile), and the refusal must show as an error on the form.
The admin's save hooks run after validation, when the form can no longer be made invalid, inside the admin's
transaction: an exception there is a 500 (or a 403) and, on SQLite, rolls back the refusal's audit entry with it
(PostgreSQL keeps it through its second connection). So, as ``AuthenticationForm`` asks
``authenticate()`` in its ``clean()``, these forms ask the services as their last validation step; ``save()`` only
returns what the services saved, and the admin's ``save_model``/``save_related`` write nothing.

The reason rules are checked first, in ``clean()``, with the services' own rules (``privileged_roles_change``), so a
missing reason is a field error and no service is called at all.
"""

import json
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib.admin.forms import AdminPasswordChangeForm as AdminSelfPasswordChangeForm
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audit import context
from audit.exceptions import InvalidAuditEntry

from . import services
from .models import GroupScope, Role
from .scope import validate_branch_scope

User = get_user_model()

REASON_HELP = (
    "Why this change is made; kept in the audit trail with it. Required when a privileged role is granted, "
    "removed or changed, or superuser status changes."
)


def reason_field() -> forms.CharField:
    # Bounded: the reason is stored in the entry's meta, whose size the recorder limits.
    return forms.CharField(
        required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 2}), help_text=REASON_HELP
    )


def acting_user() -> Any:
    """The authenticated user of the request being served: the actor of every service these forms call."""
    ctx = context.current()
    user = ctx.user if ctx is not None else None
    if user is None:
        # actor=None means "the system" to the services, which checks no right at all: never fall back to it.
        raise PermissionDenied("These forms act for the logged-in user of a request, and there is none.")
    return user


def run_as_one_change(calls: list[Callable[[], Any]]) -> Any:
    """Make the service calls of one submission; return the last result.

    Several calls are all-or-nothing: when one is refused, the calls before it are undone with their entries (on
    SQLite the refusal's own entry too, as it joins this transaction; PostgreSQL writes it through a second
    connection).
    """
    if len(calls) == 1:
        # Alone, the service owns its transaction; its refusal entry then commits with the admin's transaction.
        return calls[0]()
    result = None
    with transaction.atomic():
        for call in calls:
            result = call()
    return result


class ServiceFormMixin(forms.BaseForm):
    """A form whose last validation step is the service calls of ``apply()``; their refusals become form errors.

    ``error_field`` takes the errors that name no field of the form (templates that show no non-field errors).
    """

    error_field: str | None = None

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound or self._errors or not hasattr(self, "cleaned_data"):
            return
        if self.empty_permitted and not self.has_changed():
            return  # an extra form left blank: nothing to save
        try:
            self.apply(acting_user())
        except ValidationError as error:
            self.add_service_error(error)
        except (PermissionDenied, InvalidAuditEntry) as error:
            self.add_error(self.error_field, str(error))

    def add_service_error(self, error: ValidationError) -> None:
        messages = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
        for field, texts in messages.items():
            self.add_error(field if field in self.fields else self.error_field, texts)

    def apply(self, actor: Any) -> None:
        raise NotImplementedError

    def require_reason(self, needed: bool, why: str) -> None:
        """The form's copy of the services' ``_require_reason``: an error on "reason" instead of a refusal later."""
        if needed and not self.cleaned_data.get("reason") and "reason" not in self._errors:
            self.add_error("reason", f"A reason is required because {why}.")

    def changed(self, *names: str) -> bool:
        """Whether any of the fields changed and cleaned: only the services of changed fields are called."""
        data = self.cleaned_data
        return any(name in self.changed_data and name in data for name in names)


class ServiceModelFormMixin(ServiceFormMixin):
    """A model form saved by its services: ``save()`` returns the object they saved and writes nothing itself."""

    def save(self, commit: bool = True) -> Any:
        if self.errors:
            raise ValueError("The form did not validate: nothing was saved.")
        return self.instance

    def save_m2m(self) -> None:
        # The many-to-many fields went through the services with the rest.
        pass


# --- roles ----------------------------------------------------------------------------------------------------------


class RoleForm(ServiceModelFormMixin, forms.ModelForm):
    reason = reason_field()

    class Meta:
        model = Role
        fields = ("name", "description", "privileged", "permissions")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk is None:
            self.require_reason(
                bool(data.get("privileged") and data.get("permissions")),
                "a privileged role is created with permissions",
            )
        else:
            # role_update runs before role_permissions_replace, which then sees the new flag.
            self.require_reason(self.changed("privileged"), "the privileged flag changes")
            self.require_reason(
                self.changed("permissions") and bool(data.get("privileged")),
                f"{self.instance.name} is a privileged role",
            )
        return data

    def apply(self, actor: Any) -> None:
        data, reason = self.cleaned_data, self.cleaned_data["reason"]
        codes = services.permission_codes(data["permissions"])
        if self.instance.pk is None:
            self.instance = services.role_create(
                actor=actor,
                name=data["name"],
                description=data["description"],
                privileged=data["privileged"],
                permissions=codes,
                reason=reason,
            )
            return
        role_id = self.instance.pk
        fields = {name: data[name] for name in ("name", "description", "privileged") if self.changed(name)}
        calls: list[Callable[[], Any]] = []
        if fields:
            calls.append(lambda: services.role_update(actor=actor, role_id=role_id, reason=reason, **fields))
        if self.changed("permissions"):
            calls.append(
                lambda: services.role_permissions_replace(
                    actor=actor, role_id=role_id, permissions=codes, reason=reason
                )
            )
        if calls:
            self.instance = run_as_one_change(calls)


class DeletionForm(forms.Form):
    """The reason asked on a delete confirmation page; required when the deletion service requires one."""

    reason = reason_field()

    def __init__(self, *args: Any, reason_required: bool, why: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reason_required, self.why = reason_required, why

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.reason_required and not data.get("reason"):
            self.add_error("reason", f"A reason is required because {self.why}.")
        return data


# --- groups ---------------------------------------------------------------------------------------------------------


class BranchScopeField(forms.Field):
    """A group's branches, typed as comma-separated branch ids (``1, 2``) or as JSON (``{"allow": [1, 2]}``)."""

    widget = forms.TextInput

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("allow"), list):
            return ", ".join(str(branch) for branch in value["allow"])
        return json.dumps(value) if isinstance(value, dict) else value

    def to_python(self, value: Any) -> dict[str, list[int]]:
        text = str(value or "").strip()
        try:
            if text.startswith(("{", "[")):
                scope = json.loads(text)
            else:
                scope = {"allow": [int(part) for part in text.split(",") if part.strip()]}
        except ValueError as exc:
            raise ValidationError('Enter branch ids separated by commas (1, 2) or JSON ({"allow": [1, 2]}).') from exc
        try:
            return validate_branch_scope(scope)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["branch_scope"]) from exc

    def has_changed(self, initial: Any, data: Any) -> bool:
        # "1,2" and {"allow": [1, 2]} are the same scope: compare what they mean, not how they are typed.
        try:
            return self.to_python(data) != self.to_python(self.prepare_value(initial))
        except ValidationError:
            return True


class GroupForm(ServiceModelFormMixin, forms.ModelForm):
    roles = forms.ModelMultipleChoiceField(
        Role.objects.all(), required=False, widget=FilteredSelectMultiple("roles", is_stacked=False)
    )
    members = forms.ModelMultipleChoiceField(
        User.objects.order_by("username"), required=False, widget=FilteredSelectMultiple("members", is_stacked=False)
    )
    branch_scope = BranchScopeField(
        required=False, help_text='Branch ids separated by commas (1, 2), or JSON: {"allow": [1, 2]}. Empty: none.'
    )
    reason = reason_field()

    class Meta:
        model = Group
        fields = ("name",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        group = self.instance
        if group.pk is not None:
            self.initial.setdefault("roles", list(group.rbac_roles.all()))
            self.initial.setdefault("members", list(group.user_set.all()))
            scope = GroupScope.objects.filter(group=group).values_list("branch_scope", flat=True).first()
            self.initial.setdefault("branch_scope", scope)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        group = self.instance
        before = list(group.rbac_roles.all()) if group.pk is not None else []
        roles = list(data.get("roles") or []) if self.changed("roles") or group.pk is None else before
        # The services' order: group_create/group_update (roles) first, then group_members_set with the new roles.
        if group.pk is None:
            self.require_reason(services.privileged_roles_change([], roles), "a privileged role is granted")
        elif self.changed("roles") and group.user_set.exists():
            self.require_reason(
                services.privileged_roles_change(before, roles), "a privileged role is granted or removed"
            )
        if self.changed("members"):
            self.require_reason(
                services.privileged_roles_change([], roles),
                f"{data.get('name') or group.name} carries a privileged role",
            )
        return data

    def apply(self, actor: Any) -> None:
        data, reason = self.cleaned_data, self.cleaned_data["reason"]
        role_ids = [role.pk for role in data["roles"]]
        user_ids = [user.pk for user in data["members"]]
        if self.instance.pk is None:
            self.instance = self._create(actor, data["name"], role_ids, user_ids, data["branch_scope"], reason)
            return
        calls: list[Callable[[], Any]] = []
        group_id = self.instance.pk
        if self.changed("name", "roles"):
            changes: dict[str, Any] = {"name": data["name"]} if self.changed("name") else {}
            if self.changed("roles"):
                changes["role_ids"] = role_ids
            calls.append(lambda: services.group_update(actor=actor, group_id=group_id, reason=reason, **changes))
        if self.changed("members"):
            calls.append(
                lambda: services.group_members_set(actor=actor, group_id=group_id, user_ids=user_ids, reason=reason)
            )
        if self.changed("branch_scope"):
            calls.append(
                lambda: services.group_scope_set(
                    actor=actor, group_id=group_id, branch_scope=data["branch_scope"], reason=reason
                )
            )
        if calls:
            self.instance = run_as_one_change(calls)

    @staticmethod
    def _create(
        actor: Any, name: str, role_ids: list[int], user_ids: list[int], scope: dict[str, Any], reason: str
    ) -> Group:
        def create() -> Group:
            return services.group_create(actor=actor, name=name, role_ids=role_ids, branch_scope=scope, reason=reason)

        if not user_ids:
            return run_as_one_change([create])
        # The members need the new group's id; both calls or neither.
        with transaction.atomic():
            group = create()
            return services.group_members_set(actor=actor, group_id=group.pk, user_ids=user_ids, reason=reason)


# --- users ----------------------------------------------------------------------------------------------------------


class UserCreateForm(ServiceModelFormMixin, AdminUserCreationForm):
    """Django's add-user form, creating the account through ``user_create`` (the password is never recorded)."""

    def apply(self, actor: Any) -> None:
        data = self.cleaned_data
        self.instance = services.user_create(
            actor=actor,
            username=data["username"],
            # Password-based authentication "disabled": user_create sets an unusable password.
            password=data["password1"] if data["set_usable_password"] else None,
        )


class UserForm(ServiceModelFormMixin, UserChangeForm):
    """Django's change-user form, saving through ``user_update``, ``user_roles_set`` and ``user_deactivate``."""

    roles = forms.ModelMultipleChoiceField(
        Role.objects.all(),
        required=False,
        widget=FilteredSelectMultiple("roles", is_stacked=False),
        help_text="Roles give the user their rights, directly; the groups' roles come on top.",
    )
    reason = reason_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial.setdefault("roles", list(self.instance.rbac_roles.all()))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        user = self.instance
        self.require_reason(self.changed("is_superuser"), "superuser status is granted or removed")
        if self.changed("groups"):
            before, after = self._group_roles(user.groups.all()), self._group_roles(data["groups"])
            self.require_reason(
                services.privileged_roles_change(before, after), "a privileged role is granted or removed"
            )
        if self.changed("roles"):
            self.require_reason(
                services.privileged_roles_change(user.rbac_roles.all(), data["roles"]),
                "a privileged role is granted or removed",
            )
        return data

    def apply(self, actor: Any) -> None:
        data, reason, user_id = self.cleaned_data, self.cleaned_data["reason"], self.instance.pk
        fields = {name: data[name] for name in services.USER_FIELDS if name in self.fields and self.changed(name)}
        deactivate = fields.pop("is_active", None) is False
        if self.changed("is_active") and not deactivate:
            fields["is_active"] = True
        group_ids = [group.pk for group in data["groups"]] if self.changed("groups") else None
        calls: list[Callable[[], Any]] = []
        if fields or group_ids is not None:
            calls.append(
                lambda: services.user_update(
                    actor=actor, user_id=user_id, fields=fields, group_ids=group_ids, reason=reason
                )
            )
        if self.changed("roles"):
            role_ids = [role.pk for role in data["roles"]]
            calls.append(
                lambda: services.user_roles_set(actor=actor, user_id=user_id, role_ids=role_ids, reason=reason)
            )
        if deactivate:
            # Last: user_update refuses is_active=False; the deactivation has its own service and entry.
            calls.append(lambda: services.user_deactivate(actor=actor, user_id=user_id, reason=reason))
        if calls:
            run_as_one_change(calls)
            self.instance = User.objects.get(pk=user_id)

    @staticmethod
    def _group_roles(groups: Iterable[Group]) -> list[Role]:
        # The query user_update compares, so the form asks for a reason exactly when the service would.
        return list(Role.objects.filter(groups__in=list(groups)).distinct())


class UserPasswordForm(ServiceFormMixin, AdminPasswordChangeForm):
    """An administrator sets a user's password through ``user_password_change``.

    Without "disable password-based authentication": no service offers it, so it would go unrecorded.
    """

    error_field = "password2"  # the admin's password template shows no non-field errors

    def __init__(self, user: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.fields.pop("usable_password", None)
        self.fields["password1"].required = self.fields["password2"].required = True

    def apply(self, actor: Any) -> None:
        self.user = services.user_password_change(
            actor=actor, user_id=self.user.pk, password=self.cleaned_data["password1"]
        )

    def save(self, commit: bool = True) -> Any:
        return self.user


class SelfPasswordChangeForm(ServiceFormMixin, AdminSelfPasswordChangeForm):
    """The admin's own "change password" page (old password, new one twice) through ``user_password_change``."""

    error_field = "new_password2"

    def apply(self, actor: Any) -> None:
        # The view then refreshes the session's hash from self.user, so the user stays logged in.
        self.user = services.user_password_change(
            actor=actor, user_id=self.user.pk, password=self.cleaned_data["new_password1"]
        )

    def save(self, commit: bool = True) -> Any:
        return self.user
