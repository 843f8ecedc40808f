import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from audit import conf
from audit.archive import ArchiveFailed, ArchiveRefused, default_before, execute_archive
from audit.text import printable

from ._officer import date_argument


class Command(BaseCommand):
    help = (
        "Archive the entries of an approved request: each month becomes a signed segment (.jsonl.gz + manifest) in "
        "AUDIT_ARCHIVE_DIR, checked with the public key, and only then are the entries removed; the chain continues "
        "from a signed checkpoint. Exit 1 with one line saying why when it refuses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--before",
            help="Execute the approved request for the entries before this date (YYYY-MM-DD, rounded down to a "
            "month start); default: today minus AUDIT_RETENTION_DAYS.",
        )
        which.add_argument("--request", type=int, help="Execute this approved request.")
        parser.add_argument("--dir", dest="directory", help="Where the segments go (default: AUDIT_ARCHIVE_DIR).")
        parser.add_argument("--no-progress", action="store_true", help="Never show a progress bar.")

    def handle(
        self,
        *args: Any,
        before: str | None,
        request: int | None,
        directory: str | None,
        no_progress: bool,
        **options: Any,
    ) -> None:
        cutoff = date_argument("--before", before)
        if request is None and cutoff is None:
            cutoff = default_before().date()
        show = not no_progress and sys.stderr.isatty()
        try:
            with tqdm(unit="entries", disable=not show, file=sys.stderr) as bar:
                result = execute_archive(
                    request_id=request, before=cutoff, directory=directory or conf.archive_dir(), progress=bar.update
                )
        except (ArchiveRefused, ArchiveFailed) as exc:
            raise CommandError(printable(f"Archive refused: {exc}")) from exc
        for segment in result.segments:
            plan = segment.plan
            self.stdout.write(
                f"Wrote {segment.data}: {plan.count} entries of {plan.month}, "
                f"chain #{plan.first_index}..#{plan.last_index}."
            )
        self.stdout.write(f"Verified {len(result.segments)} segment(s) with the public key.")
        if result.plan.blocked is not None:
            self.stdout.write(printable(f"Stopped before {result.plan.blocked.month}: {result.plan.blocked.line()}."))
        self.stdout.write(
            f"Removed {result.count} entries and their seals (archive request #{result.request.pk}); the chain "
            f"continues from the signed checkpoint at #{result.checkpoint.chain_index}."
        )
        if result.dropped_partitions:
            self.stdout.write(f"Dropped the emptied partitions {', '.join(result.dropped_partitions)}.")
