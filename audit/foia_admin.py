"""The FOIA officer's admin: requests (saved through the audited services) and redaction profiles.

Imported by ``audit.admin``. Why a request's form calls the service while it validates, not in ``save_model``: the
service may still refuse (a status transition, a value), and the refusal must show as an error on the form. In
``save_model`` it would be a server error raised inside the admin's transaction (see ``rbac.forms`` for the same
pattern).
"""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import foia, redaction_profiles
from .admin_text import text_column
from .exceptions import InvalidAuditEntry
from .export.bundle import ExportError
from .export.service import foia_release_response
from .foia_models import FoiaRequest, RedactionProfile

Status = FoiaRequest.Status

REQUEST_FIELDS = ("requester", "requester_email", "description", "received_on")
SCOPE_FIELDS = (
    "scope_actor",
    "scope_action_prefix",
    "scope_entity",
    "scope_since",
    "scope_until",
    "redaction_profile",
)
RELEASE_FIELDS = ("released_at", "manifest_sha256", "created_at", "updated_at")
COMPUTED_FIELDS = ("tracking_number", "due_on", "days_left", *RELEASE_FIELDS)


class FoiaRequestForm(forms.ModelForm):
    """Saved by ``foia_request_create`` / ``foia_request_update`` as its last validation step."""

    reason = forms.CharField(
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this change is made; kept in the audit trail with it.",
    )
    # Set by FoiaRequestAdmin.get_form: the logged-in user acts; actor=None would be "the system" to the services.
    actor: Any = None

    class Meta:
        model = FoiaRequest
        fields = (*REQUEST_FIELDS, "status", *SCOPE_FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        status = self.fields.get("status")
        if status is not None:
            # "released" belongs to the export, which records the manifest with it; the rest follows TRANSITIONS.
            current = self.instance.status if self.instance.pk else Status.RECEIVED
            status.choices = [(value, Status(value).label) for value in foia.next_statuses(current)]

    def full_clean(self) -> None:
        super().full_clean()
        if not self.is_bound or self._errors or not hasattr(self, "cleaned_data"):
            return
        try:
            self.instance = self.apply()
        except ValidationError as error:
            messages = error.message_dict if hasattr(error, "error_dict") else {None: error.messages}
            for field, texts in messages.items():
                self.add_error(field if field in self.fields else None, texts)
        except (PermissionDenied, InvalidAuditEntry) as error:
            self.add_error(None, str(error))

    def apply(self) -> FoiaRequest:
        if self.actor is None:
            raise PermissionDenied("This form acts for the logged-in user of a request, and there is none.")
        data = self.cleaned_data
        reason = data.get("reason", "")
        editable = [name for name in (*REQUEST_FIELDS, *SCOPE_FIELDS) if name in self.fields]
        if self.instance.pk is None:
            fields = {name: data[name] for name in editable}
            return foia.foia_request_create(actor=self.actor, reason=reason, **fields)
        changed = {name: data[name] for name in (*editable, "status") if name in self.changed_data and name in data}
        if not changed:
            return self.instance  # nothing changed: no entry for a save that changed nothing
        return foia.foia_request_update(actor=self.actor, request_id=self.instance.pk, reason=reason, **changed)

    def save(self, commit: bool = True) -> FoiaRequest:
        # The services saved it while the form validated; saving here would write the row again, unaudited.
        if self.errors:
            raise ValueError("The form did not validate: nothing was saved.")
        return self.instance

    def save_m2m(self) -> None:
        pass


@admin.register(FoiaRequest)
class FoiaRequestAdmin(admin.ModelAdmin):
    """FOIA requests with their deadline. Every save is an audited service call; requests are never deleted."""

    form = FoiaRequestForm
    list_display = ("tracking_number", "requester_text", "received_on", "due_on", "status", "days_left")
    list_filter = ("status",)
    list_select_related = ("redaction_profile",)
    search_fields = ("tracking_number",)
    search_help_text = "Exact tracking number, e.g. FOIA-2026-000123."
    ordering = ("-received_on", "-tracking_number")
    # The export adds its "export_bundle" action here; requests have no other bulk action (no deletion).
    actions = ["export_bundle"]

    requester_text = text_column("requester", sortable=True)

    @admin.action(description="Release: export the request's scope as a verifiable bundle", permissions=["change"])
    def export_bundle(self, request: HttpRequest, queryset: QuerySet[FoiaRequest]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one request to release.", messages.ERROR)
            return None
        foia_request = queryset.get()
        if foia_request.status == Status.CLOSED:
            self.message_user(request, f"{foia_request.tracking_number} is closed.", messages.ERROR)
            return None
        try:
            return foia_release_response(foia_request=foia_request, actor=request.user)
        except (ExportError, ValidationError, PermissionDenied) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            self.message_user(request, f"{foia_request.tracking_number}: {message}", messages.ERROR)
            return None

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        reason = ("reason",) if obj is None or self.has_change_permission(request, obj) else ()
        if obj is None:
            return [
                (None, {"fields": (*REQUEST_FIELDS, "reason")}),
                ("Scope of the search", {"fields": SCOPE_FIELDS}),
            ]
        return [
            (None, {"fields": ("tracking_number", "status", *reason)}),
            ("Request", {"fields": (*REQUEST_FIELDS, "due_on", "days_left")}),
            ("Scope of the search", {"fields": SCOPE_FIELDS}),
            ("Release", {"fields": RELEASE_FIELDS}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The services' freezing rules, shown as read-only fields instead of errors after the fact.
        if obj is not None and obj.status == Status.CLOSED:
            return (*COMPUTED_FIELDS, "status", *REQUEST_FIELDS, *SCOPE_FIELDS)
        if obj is not None and obj.status == Status.RELEASED:
            return (*COMPUTED_FIELDS, *SCOPE_FIELDS)
        return COMPUTED_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A request's record is kept: 552(a)(7) tracking, and the audit entries refer to it.
        return False

    def save_model(self, request: HttpRequest, obj: FoiaRequest, form: Any, change: bool) -> None:
        # Already saved by the form's service call; obj.save() would write the row again, unaudited.
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # A tracking number is what requesters quote; exact on the unique index, case and spaces forgiven.
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        return queryset.filter(tracking_number=term), False

    @admin.display(description="working days left")
    def days_left(self, obj: FoiaRequest) -> str:
        if obj.pk is None or obj.status not in (Status.RECEIVED, Status.PROCESSING):
            return "—"
        left = foia.working_days_left(obj.due_on, timezone.localdate())
        return f"{left}" if left >= 0 else f"{-left} overdue"


class PrettyJSONField(forms.JSONField):
    """The rules shown one per line: an officer edits them by hand."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class RedactionProfileForm(forms.ModelForm):
    rules = PrettyJSONField(
        required=False,  # a profile that withholds nothing is allowed: "[]" or left empty
        widget=forms.Textarea(attrs={"rows": 12, "cols": 80, "class": "vLargeTextField"}),
        help_text=(
            'A list of rules: [{"field": "ip_address", "exemption": "(b)(6)", "staff_only": false}, ...]. '
            "field: an entry field that may be withheld; exemption: the code marked in its place; "
            "staff_only: withhold it only where the actor is staff."
        ),
    )

    class Meta:
        model = RedactionProfile
        fields = ("name", "description", "rules")


@admin.register(RedactionProfile)
class RedactionProfileAdmin(admin.ModelAdmin):
    """Redaction profiles; the rules are validated by the model's clean() (parse_rules), errors name the rule."""

    form = RedactionProfileForm
    list_display = ("name_text", "rules_text", "request_count", "updated_at")
    search_fields = ("name",)
    name_text = text_column("name", sortable=True)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(request_count=Count("foia_requests"))

    @admin.display(description="rules")
    def rules_text(self, profile: RedactionProfile) -> str:
        try:
            rules = profile.redaction_rules()
        except ValueError:
            return "invalid rules"
        return "; ".join(f"{r.field} {r.exemption}{' (staff)' if r.staff_only else ''}" for r in rules) or "—"

    @admin.display(description="requests", ordering="request_count")
    def request_count(self, profile: RedactionProfile) -> int:
        return profile.request_count

    # Every change goes through the audited services: the admin's own save and delete would leave no entry.
    def save_model(self, request: HttpRequest, obj: RedactionProfile, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in redaction_profiles.FIELDS}
        if change:
            saved = redaction_profiles.redaction_profile_update(actor=request.user, profile_id=obj.pk, **fields)
        else:
            saved = redaction_profiles.redaction_profile_create(actor=request.user, **fields)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: RedactionProfile) -> None:
        redaction_profiles.redaction_profile_delete(actor=request.user, profile_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for pk in queryset.values_list("pk", flat=True):
            redaction_profiles.redaction_profile_delete(actor=request.user, profile_id=pk)
