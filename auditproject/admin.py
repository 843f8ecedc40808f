"""The console's admin site: Django's, with the self-service password change going through the audited service."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.views import PasswordChangeView
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from rbac.forms import SelfPasswordChangeForm


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
