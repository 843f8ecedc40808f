import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from audit.models import AuditLog, Seal
from audit.sealing import seal_pending


class Command(BaseCommand):
    help = "Seal committed audit entries that have no seal yet (normally done right after each commit)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--full",
            action="store_true",
            help="Look at the whole table, not only recent entries (after an outage of the sealer).",
        )
        parser.add_argument("--no-progress", action="store_true", help="Never show a progress bar.")

    def handle(self, *args: Any, full: bool, no_progress: bool, **options: Any) -> None:
        # On stderr and only on a terminal: cron mails and pipes get the one summary line on stdout.
        show = not no_progress and sys.stderr.isatty()
        # Two counts, only for the bar's total (an estimate: entries may arrive meanwhile); not worth them unattended.
        total = max(AuditLog.objects.count() - Seal.objects.count(), 0) if show else None
        with tqdm(total=total, unit="entries", disable=not show, file=sys.stderr) as bar:
            sealed = seal_pending(full_scan=full, progress=bar.update)
        self.stdout.write(f"Sealed {sealed} entries.")
