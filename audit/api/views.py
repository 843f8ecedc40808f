from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db.models import prefetch_related_objects
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auditproject.exceptions import Conflict
from auditproject.parsers import UnicodeJSONParser

from .. import signing
from ..actions import AuditAction
from ..ingest import IdempotencyConflict, fingerprint, ingest_events
from ..models import AuditLog, SignedDigest
from ..privacy import reveal, subjects_of
from ..redaction import redact
from ..selectors import visible_entries
from ..services import Outcome, record
from ..subject_access import subject_access_export
from ..verify import verify_chain
from .filters import AuditLogFilter
from .ingest_serializers import EventBatchSerializer, SingleEventSerializer
from .mixins import RecordsDeniedAttemptsMixin
from .pagination import NewestFirstCursorPagination
from .permissions import CanExportSubjectAccess, CanRecordEvents, IsComplianceOfficer
from .serializers import AuditLogSerializer, SignedDigestSerializer, VerifyReportSerializer

INGEST_EXAMPLE = """Record an event of another system. Only accounts with the permission `audit.record_event`
(service accounts) may call it; the account is recorded as the actor, and the server sets id, time and seal.

```sh
curl -X POST https://audit.example.org/api/audit/events \\
  -H 'Authorization: Token <service account token>' \\
  -H 'Content-Type: application/json' \\
  -H 'Idempotency-Key: 7f1c9a52-provider-connect-1' \\
  -d '{"action": "PROVIDER.CONNECT", "entity": "Provider", "entity_id": "acme",
       "on_behalf_of": "carol", "client_ip": "198.51.100.7",
       "occurred_at": "2026-11-23T09:30:00Z", "meta": {"reason": "nightly sync"}}'
```

A retry with the same `Idempotency-Key` and body returns the first result (header `Idempotent-Replayed: true`);
the same key with another body is a 409."""

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    description="Makes a retry safe: unique per service account, at most 255 characters.",
)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key.strip() or len(key) > 255:
        raise ValidationError({"Idempotency-Key": ["Must be 1 to 255 characters."]})
    return key


def _ingest(request: Request, events: list[dict[str, Any]]) -> tuple[list[AuditLog], dict[str, str]]:
    try:
        result = ingest_events(
            source=request.user,
            events=events,
            idempotency_key=_idempotency_key(request),
            # Of the redacted body: the print is stored, and must not let anyone test guesses of a secret.
            body_print=fingerprint(redact(request.data)),
        )
    except IdempotencyConflict as exc:
        raise Conflict(str(exc)) from exc
    # The seals were written when the transaction committed; one query fetches them all.
    prefetch_related_objects(result.entries, "seal")
    if result.replayed:
        reveal(result.entries)
    return result.entries, {"Idempotent-Replayed": "true"} if result.replayed else {}


class AuditEventListApi(RecordsDeniedAttemptsMixin, generics.ListAPIView):
    """Audit entries, newest first. Officers see all entries; other users only their own."""

    serializer_class = AuditLogSerializer
    filterset_class = AuditLogFilter
    pagination_class = NewestFirstCursorPagination
    denied_action = AuditAction.AUDIT_INGEST

    def get_permissions(self) -> list[Any]:
        if self.request.method == "POST":
            return [IsAuthenticated(), CanRecordEvents()]
        return super().get_permissions()

    def get_parsers(self) -> list[Any]:
        return [UnicodeJSONParser()]

    def get_queryset(self) -> Any:
        return visible_entries(viewer=self.request.user)

    def paginate_queryset(self, queryset: Any) -> list[AuditLog] | None:
        page = super().paginate_queryset(queryset)
        if page is not None:
            reveal(page)
            self._shown = page
        return page

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        record(
            AuditAction.AUDIT_VIEW,
            entity="AuditLog",
            meta={
                "filters": redact(dict(request.query_params.items())),
                "returned": len(response.data["results"]),
                "subjects": subjects_of(getattr(self, "_shown", [])),
            },
            actor=request.user,
        )
        return response

    @extend_schema(
        summary="Record an event from another system",
        description=INGEST_EXAMPLE,
        request=SingleEventSerializer,
        responses={201: AuditLogSerializer},
        parameters=[IDEMPOTENCY_KEY],
    )
    def post(self, request: Request) -> Response:
        serializer = SingleEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entries, headers = _ingest(request, [serializer.validated_data])
        return Response(AuditLogSerializer(entries[0]).data, status=status.HTTP_201_CREATED, headers=headers)


class AuditEventBatchApi(RecordsDeniedAttemptsMixin, APIView):
    """Up to 1,000 events of another system in one transaction: all of them land, or none."""

    permission_classes = [IsAuthenticated, CanRecordEvents]
    parser_classes = [UnicodeJSONParser]
    denied_action = AuditAction.AUDIT_INGEST

    @extend_schema(
        summary="Record up to 1,000 events at once",
        request=EventBatchSerializer,
        # The entries under "events", as the request sends them.
        responses={
            201: inline_serializer("RecordedEventBatch", fields={"events": AuditLogSerializer(many=True)}),
        },
        parameters=[IDEMPOTENCY_KEY],
    )
    def post(self, request: Request) -> Response:
        serializer = EventBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entries, headers = _ingest(request, serializer.validated_data["events"])
        return Response(
            {"events": AuditLogSerializer(entries, many=True).data}, status=status.HTTP_201_CREATED, headers=headers
        )


class AuditEventDetailApi(generics.RetrieveAPIView):
    serializer_class = AuditLogSerializer

    def get_object(self) -> AuditLog:
        entry = get_object_or_404(visible_entries(viewer=self.request.user), pk=self.kwargs["pk"])
        reveal([entry])
        self._shown = entry
        return entry

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().retrieve(request, *args, **kwargs)
        record(
            AuditAction.AUDIT_VIEW,
            entity="AuditLog",
            entity_id=kwargs["pk"],
            meta={"subjects": subjects_of([self._shown])},
            actor=request.user,
        )
        return response


class AuditVerifyApi(RecordsDeniedAttemptsMixin, APIView):
    """Recompute the hash chain and report each finding (compliance officers only)."""

    permission_classes = [IsComplianceOfficer]
    denied_action = AuditAction.AUDIT_VERIFY

    @extend_schema(summary="Verify the hash chain", responses={200: VerifyReportSerializer})
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


class DigestPagination(CursorPagination):
    ordering = "-chain_index"
    page_size = 100

    def get_paginated_response(self, data: Any) -> Response:
        # The key every digest should name: a digest signed by another key stands out at once.
        response = super().get_paginated_response(data)
        try:
            response.data["public_key_fingerprint"] = signing.fingerprint(signing.load_public_key())
        except ImproperlyConfigured:
            response.data["public_key_fingerprint"] = None
        return response


class AuditDigestListApi(RecordsDeniedAttemptsMixin, generics.ListAPIView):
    """The signed digests of the chain head, newest first, with the fingerprint of the key that verifies them."""

    permission_classes = [IsComplianceOfficer]
    serializer_class = SignedDigestSerializer
    pagination_class = DigestPagination
    queryset = SignedDigest.objects.all()
    denied_action = AuditAction.AUDIT_VIEW

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        record(AuditAction.AUDIT_VIEW, entity="SignedDigest", meta={"via": "api"}, actor=request.user)
        return response


class SubjectAccessApi(RecordsDeniedAttemptsMixin, APIView):
    """GDPR Art. 15: every audit entry about a user (decrypted, or ``[ERASED]`` after an erasure) and who consulted
    their entries, as one JSON document (the same as ``manage.py audit_subject_access``). Recorded as
    AUDIT.SUBJECT.ACCESS."""

    permission_classes = [CanExportSubjectAccess]
    denied_action = AuditAction.AUDIT_SUBJECT_ACCESS
    denied_entity = "User"

    @extend_schema(
        summary="Export a data subject's entries (GDPR Art. 15)",
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, user_id: int) -> Response:
        subject = get_object_or_404(get_user_model(), pk=user_id)
        document = subject_access_export(subject=subject, actor=request.user, via="api")
        name = f"subject-access-{subject.pk}-{timezone.now():%Y%m%dT%H%M%SZ}.json"
        return Response(document, headers={"Content-Disposition": f'attachment; filename="{name}"'})
