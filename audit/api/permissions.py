from typing import Any

from rest_framework.permissions import BasePermission

from ..selectors import can_view_all
from ..subject_access import PERMISSION as SUBJECT_ACCESS_PERMISSION


class IsComplianceOfficer(BasePermission):
    """Holders of ``audit.view_auditlog``: the compliance officers and whoever an administrator gave it to."""

    message = "Only compliance officers (permission audit.view_auditlog) may do this."

    def has_permission(self, request: Any, view: Any) -> bool:
        return can_view_all(request.user)


class CanRecordEvents(BasePermission):
    """Service accounts of other systems: holders of ``audit.record_event``."""

    message = "Only service accounts with the permission audit.record_event may record events."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.has_perm("audit.record_event"))


class CanExportSubjectAccess(BasePermission):
    """Privacy officers: holders of ``audit.export_subject_access`` (no default role has it)."""

    message = "Only holders of the permission audit.export_subject_access may export a subject's entries."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.has_perm(SUBJECT_ACCESS_PERMISSION))
