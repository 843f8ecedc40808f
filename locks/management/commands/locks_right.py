import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.management.commands._officer import error_message, officer
from locks import services
from locks.models import Repository


class Command(BaseCommand):
    help = "Give or take away one user's right to force-release locks in one repository (audited, reason required)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("change", choices=["grant", "revoke"])
        parser.add_argument("repository", help="Repository slug.")
        parser.add_argument("username", help="Whose right changes.")
        parser.add_argument("--reason", required=True, help="Why; kept in the audit trail.")
        parser.add_argument("--as", dest="acting", required=True, help="The administrator making the change.")

    def handle(
        self, *args: Any, change: str, repository: str, username: str, reason: str, acting: str, **options: Any
    ) -> None:
        actor = officer(acting)
        repo = Repository.objects.filter(slug=repository).first()
        if repo is None:
            raise CommandError(f"repository {repository}: no such repository")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"user {username}: no such user")
        service = (
            services.repository_force_unlock_grant if change == "grant" else services.repository_force_unlock_revoke
        )
        try:
            service(actor=actor, repository_id=repo.pk, user=user, reason=reason)
        except PermissionDenied as exc:
            self.stderr.write(str(exc))
            sys.exit(1)
        except ValidationError as exc:
            raise CommandError(error_message(exc)) from exc
        verb = "may now" if change == "grant" else "may no longer"
        self.stdout.write(f"{username} {verb} force-release locks in {repository}.")
