from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import generics
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..actions import AuditAction
from ..models import AuditLog
from ..redaction import redact
from ..selectors import visible_entries
from ..services import Outcome, record
from ..verify import verify_chain
from .filters import AuditLogFilter
from .pagination import NewestFirstCursorPagination
from .permissions import IsComplianceOfficer
from .serializers import AuditLogSerializer, VerifyReportSerializer


class RecordsDeniedAttemptsMixin:
    """A refused call by an authenticated user is itself an entry (PCI DSS 10.2.1.4)."""

    denied_action: str

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> None:
        if request.user and request.user.is_authenticated:
            record(
                self.denied_action,
                entity="AuditLog",
                outcome=Outcome.DENIED,
                meta={"path": request.path, "method": request.method},
                actor=request.user,
                independent=True,
            )
        super().permission_denied(request, message=message, code=code)  # type: ignore[misc]


class AuditEventListApi(generics.ListAPIView):
    """Audit entries, newest first. Officers see all entries; other users only their own."""

    serializer_class = AuditLogSerializer
    filterset_class = AuditLogFilter
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self) -> Any:
        return visible_entries(viewer=self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        record(
            AuditAction.AUDIT_VIEW,
            entity="AuditLog",
            meta={"filters": redact(dict(request.query_params.items())), "returned": len(response.data["results"])},
            actor=request.user,
        )
        return response


class AuditEventDetailApi(generics.RetrieveAPIView):
    serializer_class = AuditLogSerializer

    def get_object(self) -> AuditLog:
        return get_object_or_404(visible_entries(viewer=self.request.user), pk=self.kwargs["pk"])

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        record(AuditAction.AUDIT_VIEW, entity="AuditLog", entity_id=kwargs["pk"], actor=request.user)
        return response


class AuditVerifyApi(RecordsDeniedAttemptsMixin, APIView):
    """Recompute the hash chain and report each finding (compliance officers only)."""

    permission_classes = [IsComplianceOfficer]
    denied_action = AuditAction.AUDIT_VERIFY

    def get(self, request: Request) -> Response:
        report = verify_chain()
        record(
            AuditAction.AUDIT_VERIFY,
            entity="AuditLog",
            outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
            meta={"entries_checked": report.entries_checked, "findings": len(report.findings), "via": "api"},
            actor=request.user,
        )
        return Response(VerifyReportSerializer(report.as_dict()).data)
