from typing import Any

from rest_framework.permissions import BasePermission

from ..selectors import can_view_all


class IsComplianceOfficer(BasePermission):
    """Holders of ``audit.view_auditlog``: the compliance officers and whoever an administrator gave it to."""

    message = "Only compliance officers (permission audit.view_auditlog) may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return can_view_all(request.user)
