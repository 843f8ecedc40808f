"""The officers' dashboard in the compliance console (wired in by ``auditproject.admin.ConsoleAdminSite``).

Thin views: the selectors of ``audit.dashboard`` read, ``audit.anomalies.anomaly_acknowledge`` writes.
"""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from .actions import AuditAction
from .anomalies import ACKNOWLEDGE_PERMISSION, NOTE_MAX_LENGTH, anomaly_acknowledge
from .dashboard import officer_dashboard
from .models import Anomaly
from .services import record

TEMPLATE = "admin/audit/dashboard.html"


def dashboard_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """GET: the dashboard (403 without ``audit.view_auditlog``); the read is recorded as one AUDIT.VIEW."""
    data = officer_dashboard(viewer=request.user)
    context = {
        **site.each_context(request),
        "title": "Compliance dashboard",
        "dashboard": data,
        "can_acknowledge": request.user.has_perm(ACKNOWLEDGE_PERMISSION),
        "note_max_length": NOTE_MAX_LENGTH,
    }
    request.current_app = site.name
    response = TemplateResponse(request, TEMPLATE, context).render()
    # After rendering, so that a page that failed to render is not recorded as seen; before returning, so that a
    # read that cannot be recorded is not shown (fail closed).
    record(AuditAction.AUDIT_VIEW, entity="AuditLog", meta={"via": "dashboard"}, actor=request.user)
    return response


def acknowledge_view(request: HttpRequest, anomaly_id: int, site: admin.AdminSite) -> HttpResponse:
    """POST with a ``note``: acknowledge one anomaly through the audited service, then back to the dashboard.

    A refusal is a 403 (the service recorded it as ``denied``); a missing note or an anomaly acknowledged already
    comes back as an error message on the dashboard.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        anomaly = anomaly_acknowledge(actor=request.user, anomaly_id=anomaly_id, note=request.POST.get("note", ""))
    except Anomaly.DoesNotExist as exc:
        raise Http404(f"No anomaly #{anomaly_id}.") from exc
    except ValidationError as exc:
        messages.error(request, f"Anomaly #{anomaly_id} not acknowledged: {' '.join(exc.messages)}")
    else:
        messages.success(request, f"Anomaly #{anomaly.pk} acknowledged.")
    return HttpResponseRedirect(reverse("admin:audit_dashboard", current_app=site.name))
