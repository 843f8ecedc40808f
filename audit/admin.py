"""The compliance console: a read-only view of the audit trail that stays quick at millions of rows."""

from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from .actions import AuditAction
from .admin_filters import ActionFamilyFilter, CreatedAtRangeFilter, EntityFilter
from .catalogue import registered_action_save
from .models import AuditLog, RegisteredAction
from .services import record
from .text import printable


class BoundedCountPaginator(Paginator):
    """Counts at most ``COUNT_CAP`` rows, so a changelist over millions of rows never runs a full COUNT(*)."""

    COUNT_CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.COUNT_CAP].count()


def _json_cell(value: Any) -> str:
    return printable(value) if isinstance(value, str) else printable(repr(value)) if value is not None else "—"


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "actor_text", "action", "entity", "entity_id_text", "outcome", "ip_address", "sealed")
    list_display_links = ("id", "created_at")
    list_filter = (ActionFamilyFilter, "outcome", EntityFilter, CreatedAtRangeFilter)
    list_select_related = ("seal",)
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = BoundedCountPaginator
    search_fields = ("id", "request_id", "entity_id", "actor_label")
    search_help_text = "Exact match on entry id, request id, entity id or actor name."
    ordering = ("-id",)
    actions = None
    fields = (
        "id",
        "created_at",
        "actor_text",
        "action",
        "action_description",
        "entity",
        "entity_id_text",
        "outcome",
        "changes_table",
        "meta_table",
        "perms_text",
        "ip_address",
        "user_agent_text",
        "request_id",
        "seal_status",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # Exact matches on indexed columns only: a LIKE '%term%' over millions of rows is a full scan.
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(request_id=term) | Q(entity_id=term) | Q(actor_label=term)
        if term.isdigit():
            match |= Q(id=int(term))
        return queryset.filter(match), False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if response.status_code == 200:
            filters = {key: value for key, value in request.GET.items()}
            record(AuditAction.AUDIT_VIEW, entity="AuditLog", meta={"filters": filters, "via": "admin"}, actor=request.user)
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().change_view(request, object_id, form_url, extra_context)
        if response.status_code == 200:
            record(
                AuditAction.AUDIT_VIEW, entity="AuditLog", entity_id=object_id, meta={"via": "admin"}, actor=request.user
            )
        return response

    @admin.display(description="actor", ordering="actor_label")
    def actor_text(self, entry: AuditLog) -> str:
        label = printable(entry.actor_label) or "—"
        return f"{label} (#{entry.actor_id})" if entry.actor_id else label

    @admin.display(description="entity id")
    def entity_id_text(self, entry: AuditLog) -> str:
        return printable(entry.entity_id)

    @admin.display(description="user agent")
    def user_agent_text(self, entry: AuditLog) -> str:
        return printable(entry.user_agent)

    @admin.display(description="description")
    def action_description(self, entry: AuditLog) -> str:
        try:
            return AuditAction(entry.action).label
        except ValueError:
            return "—"

    @admin.display(boolean=True, description="sealed")
    def sealed(self, entry: AuditLog) -> bool:
        return getattr(entry, "seal", None) is not None

    @admin.display(description="changes")
    def changes_table(self, entry: AuditLog) -> str:
        if not entry.changes:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            (
                (printable(field), _json_cell(change.get("before")), _json_cell(change.get("after")))
                if isinstance(change, dict)
                else (printable(field), "—", _json_cell(change))
                for field, change in entry.changes.items()
            ),
        )
        return format_html(
            '<table class="audit-diff"><thead><tr><th>field</th><th>before</th><th>after</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="context (meta)")
    def meta_table(self, entry: AuditLog) -> str:
        if not entry.meta:
            return "—"
        rows = format_html_join(
            "", "<tr><th>{}</th><td>{}</td></tr>", ((printable(k), _json_cell(v)) for k, v in entry.meta.items())
        )
        return format_html('<table class="audit-meta"><tbody>{}</tbody></table>', rows)

    @admin.display(description="permissions at the time")
    def perms_text(self, entry: AuditLog) -> str:
        perms = entry.perms_snapshot.get("perms", []) if isinstance(entry.perms_snapshot, dict) else []
        return printable(", ".join(map(str, perms))) or "none"

    @admin.display(description="seal")
    def seal_status(self, entry: AuditLog) -> str:
        seal = getattr(entry, "seal", None)
        if seal is None:
            return "Not sealed yet: the sealer appends committed entries to the chain within seconds."
        return format_html(
            "Sealed at chain position #{} on {}<br>hash <code>{}</code><br>previous <code>{}</code>",
            seal.chain_index,
            seal.sealed_at.isoformat(),
            seal.hash,
            seal.prev_hash,
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("seal")


@admin.register(RegisteredAction)
class RegisteredActionAdmin(admin.ModelAdmin):
    """Other systems' action codes. Saved through the catalogue service, so every change is audited."""

    list_display = ("code", "description", "compliance", "updated_at")
    search_fields = ("code", "description")
    fields = ("code", "description", "compliance")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Entries refer to the code: renaming it would silently re-label history.
        return ("code",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RegisteredAction, form: Any, change: bool) -> None:
        saved = registered_action_save(
            actor=request.user, code=obj.code, description=obj.description, compliance=obj.compliance
        )
        obj.pk = saved.pk


from . import foia_admin  # noqa: E402,F401  (FOIA requests and redaction profiles)
