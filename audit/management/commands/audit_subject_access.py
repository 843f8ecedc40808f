import json
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.subject_access import subject_access_export
from audit.text import printable

from ._officer import officer
from ._officer import subject as named_subject


class Command(BaseCommand):
    help = (
        "Export, as JSON, every audit entry about a user and who consulted their entries and when (GDPR Art. 15). "
        "The export is itself recorded."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The subject: a username or a user id.")
        parser.add_argument("--as", dest="username", help="The officer asking (default: the system).")

    def handle(self, *args: Any, user: str, **options: Any) -> None:
        subject = named_subject(user)
        actor = officer(options["username"]) if options.get("username") else None
        try:
            document = subject_access_export(subject=subject, actor=actor)
        except PermissionDenied as exc:
            raise CommandError(printable(f"Refused: {exc}")) from exc
        # ASCII only: control characters in stored text come out as JSON escapes, never raw on a terminal.
        self.stdout.write(json.dumps(document, indent=2, sort_keys=True))
