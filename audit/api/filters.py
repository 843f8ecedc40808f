import django_filters
from django.db.models import QuerySet

from ..models import AuditLog
from ..selectors import with_action_prefix


class AuditLogFilter(django_filters.FilterSet):
    actor = django_filters.NumberFilter(field_name="actor_id", help_text="User id of the actor.")
    action = django_filters.CharFilter(
        method="filter_action", help_text="An action code (ROLE.CREATE), or a prefix ending in a dot (ROLE.)."
    )
    entity = django_filters.CharFilter()
    entity_id = django_filters.CharFilter()
    outcome = django_filters.ChoiceFilter(choices=AuditLog.Outcome.choices)
    request_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte", help_text="ISO 8601, inclusive.")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt", help_text="ISO 8601, exclusive.")

    class Meta:
        model = AuditLog
        fields: list[str] = []

    def filter_action(self, queryset: QuerySet[AuditLog], name: str, value: str) -> QuerySet[AuditLog]:
        if value.endswith("."):
            # The (action, id) index, as the console's family filter uses it.
            return with_action_prefix(queryset, value)
        return queryset.filter(action=value)
