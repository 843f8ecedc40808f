"""The console's admin site: Django's, with the self-service password change going through the audited service,
and the officers' dashboard (``/admin/audit/dashboard/``) linked from the "Audit trail" section."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse

from rbac.forms import SelfPasswordChangeForm

DASHBOARD_PERMISSION = "audit.view_auditlog"


class ConsoleAdminSite(admin.AdminSite):
    def password_change(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # Django's view with its form swapped: AdminSite has no attribute for the form of this page.
        url = reverse("admin:password_change_done", current_app=self.name)
        defaults: dict[str, Any] = {
            "form_class": SelfPasswordChangeForm,
            "success_url": url,
            "extra_context": {**self.each_context(request), **(extra_context or {})},
        }
        if self.password_change_template is not None:
            defaults["template_name"] = self.password_change_template
        request.current_app = self.name
        return PasswordChangeView.as_view(**defaults)(request)

    def get_urls(self) -> list[URLPattern | URLResolver]:
        # Imported here: the views import the audit app's models, which this module (loaded with the admin app)
        # must not touch before the apps are ready.
        from audit.admin_dashboard import acknowledge_view, dashboard_view

        def dashboard(request: HttpRequest) -> HttpResponse:
            return dashboard_view(request, self)

        def acknowledge(request: HttpRequest, anomaly_id: int) -> HttpResponse:
            return acknowledge_view(request, anomaly_id, self)

        # Ahead of the site's own patterns, whose catch-all would otherwise answer these paths first.
        return [
            path("audit/dashboard/", self.admin_view(dashboard), name="audit_dashboard"),
            path(
                "audit/dashboard/anomalies/<int:anomaly_id>/acknowledge/",
                self.admin_view(acknowledge),
                name="audit_anomaly_acknowledge",
            ),
            *super().get_urls(),
        ]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """The apps as Django lists them, with the dashboard first in "Audit trail" for those who may open it
        (index page, app page and the navigation sidebar all read this list)."""
        app_list = super().get_app_list(request, app_label)
        if not request.user.has_perm(DASHBOARD_PERMISSION):
            return app_list
        for app in app_list:
            if app["app_label"] == "audit":
                app["models"].insert(
                    0,
                    {
                        "name": "Dashboard",
                        "object_name": "Dashboard",
                        "perms": {"add": False, "change": False, "delete": False, "view": True},
                        "admin_url": reverse("admin:audit_dashboard", current_app=self.name),
                        "add_url": None,
                        "view_only": True,
                    },
                )
        return app_list
