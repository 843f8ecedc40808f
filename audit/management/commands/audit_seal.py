from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.sealing import seal_pending


class Command(BaseCommand):
    help = "Seal committed audit entries that have no seal yet (normally done right after each commit)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="Look at the whole table, not only recent entries (after an outage of the sealer).",
        )

    def handle(self, *args: Any, full: bool, **options: Any) -> None:
        sealed = seal_pending(full_scan=full)
        self.stdout.write(f"Sealed {sealed} entries.")
