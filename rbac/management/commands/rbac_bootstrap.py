from typing import Any

from django.core.management.base import BaseCommand

from rbac.defaults import bootstrap_default_roles


class Command(BaseCommand):
    help = "Create the default roles (administrator, compliance officer, lock administrator, member) that are missing."

    def handle(self, *args: Any, **options: Any) -> None:
        created = bootstrap_default_roles()
        names = ", ".join(role.name for role in created) or "none (all present)"
        self.stdout.write(f"Default roles created: {names}.")
