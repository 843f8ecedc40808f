from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.erasure import erase_subject
from audit.text import printable

from ._officer import error_message, officer
from ._officer import subject as named_subject


class Command(BaseCommand):
    help = (
        "Erase a data subject's personal fields from the audit trail (GDPR Art. 17) by destroying their key. "
        "The entries, their times, actions and the hash chain stay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The subject: a username or a user id.")
        parser.add_argument("--reason", default="", help="Why, e.g. the request it answers (required).")
        parser.add_argument("--as", dest="username", help="The officer erasing (default: the system).")

    def handle(self, *args: Any, user: str, reason: str, **options: Any) -> None:
        if not reason.strip():
            raise CommandError("--reason is required: say why the subject is erased, e.g. the request it answers.")
        subject = named_subject(user)
        actor = officer(options["username"]) if options.get("username") else None
        try:
            erase_subject(subject=subject, actor=actor, reason=reason.strip())
        except PermissionDenied as exc:
            raise CommandError(printable(f"Refused: {exc}")) from exc
        except ValidationError as exc:
            raise CommandError(printable(f"Refused: {error_message(exc)}")) from exc
        self.stdout.write(f"Subject #{subject.pk} erased: their personal fields now read [ERASED].")
