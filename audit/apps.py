from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from . import bootstrap, checks, receivers  # noqa: F401  (connects the auth signal receivers, registers checks)

        post_migrate.connect(bootstrap.ensure_officer_group, sender=self)
        post_migrate.connect(bootstrap.ensure_default_redaction_profile, sender=self)
