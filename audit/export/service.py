"""Making an export: the bundle streamed to the caller, recorded as AUDIT.EXPORT once its manifest is signed."""

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone

from .. import context
from ..actions import AuditAction
from ..services import record
from .bundle import BundleSummary, ExportScope, plan, stream_bundle
from .cover import CoverLetter, render_cover_letter


def cover_for(scope: ExportScope, summary: BundleSummary, **request: Any) -> bytes:
    """The response letter; ``request`` holds requester, request_description, received_on and searched when the
    export answers a FOIA request."""
    return render_cover_letter(
        CoverLetter(
            tracking_number=scope.tracking_number,
            requester=request.get("requester", ""),
            request_description=request.get("request_description", ""),
            received_on=request.get("received_on"),
            searched=request.get("searched", ""),
            released_count=summary.released,
            withheld_fields_count=summary.fields_withheld,
            exemptions=dict(summary.exemptions),
            chain_range=(summary.first_index, summary.last_index),
            head_hash=summary.head_hash,
        )
    )


def export_response(
    *,
    scope: ExportScope,
    actor: Any,
    cover: Callable[[BundleSummary], bytes],
    released: Callable[[str, BundleSummary], None] | None = None,
) -> StreamingHttpResponse:
    """A streamed ZIP of ``scope``. Raises ExportError before anything is sent when the export cannot be made.

    Once the manifest is signed the export is recorded (request number, manifest SHA-256, counts) and
    ``released(manifest_sha256, summary)`` runs, e.g. to mark a FOIA request released.
    """
    summary = plan(scope)
    # The body is produced after the view has returned, outside the request context: keep it for the entry.
    bound = context.current()

    def complete(manifest_sha256: str, done: BundleSummary) -> None:
        with context.bound(bound) if bound else nullcontext():
            record(
                AuditAction.AUDIT_EXPORT,
                entity="AuditLog",
                meta={
                    "request": scope.tracking_number,
                    "manifest_sha256": manifest_sha256,
                    "filters": scope.filters,
                    "released": done.released,
                    "fields_withheld": done.fields_withheld,
                    "chain_range": [done.first_index, done.last_index],
                    "subjects": sorted(done.subjects),
                },
                actor=actor,
            )
            if released is not None:
                released(manifest_sha256, done)

    response = StreamingHttpResponse(
        stream_bundle(scope, summary, cover_pdf=cover, on_complete=complete), content_type="application/zip"
    )
    name = scope.tracking_number or f"audit-export-{timezone.now():%Y%m%dT%H%M%SZ}"
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response


def foia_release_response(*, foia_request: Any, actor: Any) -> StreamingHttpResponse:
    """Answer a FOIA request: its scope, redacted by its profile, streamed as a bundle; once the manifest is signed
    the request is "released" with the manifest's SHA-256."""
    # Imported here: the FOIA module builds on the export, not the other way round.
    from ..foia import describe_scope, foia_request_update, foia_scope

    filters = foia_request.scope_filters()
    profile = foia_request.redaction_profile
    scope = ExportScope(
        entries=foia_scope(foia_request),
        rules=profile.redaction_rules() if profile else [],
        filters=filters,
        tracking_number=foia_request.tracking_number,
    )

    def cover(summary: BundleSummary) -> bytes:
        return cover_for(
            scope,
            summary,
            requester=foia_request.requester,
            request_description=foia_request.description,
            received_on=foia_request.received_on,
            searched=describe_scope(filters),
        )

    def released(manifest_sha256: str, summary: BundleSummary) -> None:
        # A request is released from "processing"; one still "received" passes through it now, so that nothing
        # changes state unless the bundle was made.
        if foia_request.status == foia_request.Status.RECEIVED:
            foia_request_update(actor=actor, request_id=foia_request.pk, status=foia_request.Status.PROCESSING)
        foia_request_update(
            actor=actor,
            request_id=foia_request.pk,
            status=foia_request.Status.RELEASED,
            manifest_sha256=manifest_sha256,
        )

    return export_response(scope=scope, actor=actor, cover=cover, released=released)
