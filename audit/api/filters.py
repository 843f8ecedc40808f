import datetime as dt
from typing import Any

import django_filters
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField

from ..models import AuditLog
from ..selectors import with_action_prefix


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601, as a time in UTC. Python reads offsets up to ±23:59 (``+18:14``), PostgreSQL refuses any beyond
    ±15:59 in a query; in UTC the time is the same instant and every database takes it."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError as exc:  # 0001-01-01T00:00+01:00 is a time before year 1 in UTC
            raise ValidationError("Out of the range of times that can be stored.", code="invalid") from exc


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class AuditLogFilter(django_filters.FilterSet):
    actor = django_filters.NumberFilter(field_name="actor_id", help_text="User id of the actor.")
    action = django_filters.CharFilter(
        method="filter_action", help_text="An action code (ROLE.CREATE), or a prefix ending in a dot (ROLE.)."
    )
    entity = django_filters.CharFilter()
    entity_id = django_filters.CharFilter()
    outcome = django_filters.ChoiceFilter(choices=AuditLog.Outcome.choices)
    request_id = django_filters.CharFilter()
    since = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive.")
    until = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive.")

    class Meta:
        model = AuditLog
        fields: list[str] = []

    def filter_action(self, queryset: QuerySet[AuditLog], name: str, value: str) -> QuerySet[AuditLog]:
        if value.endswith("."):
            # The (action, id) index, as the console's family filter uses it.
            return with_action_prefix(queryset, value)
        return queryset.filter(action=value)
