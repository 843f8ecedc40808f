from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """django.contrib.admin with the console's site as ``admin.site`` (a dotted path: imported once apps are ready)."""

    default_site = "auditproject.admin.ConsoleAdminSite"
