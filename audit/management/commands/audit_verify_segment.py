import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.segments import verify_segments
from audit.signing import public_key_from_pem
from audit.text import printable


class Command(BaseCommand):
    help = (
        "Check archive segments offline with the public key: each segment's values, chain and signatures, and that "
        "the segments given (or a whole directory) join up. Exit 1 naming each problem."
    )
    # Works without a database: the archive is checked where it is kept.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("segments", nargs="+", help="Manifests, data files (.jsonl.gz) or directories.")
        parser.add_argument("--public-key", required=True, help="The Ed25519 public key (PEM file).")

    def handle(self, *args: Any, segments: list[str], public_key: str, **options: Any) -> None:
        try:
            key = public_key_from_pem(Path(public_key).read_bytes())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--public-key {public_key}: not a readable Ed25519 public key ({exc})") from exc
        reports, joined = verify_segments(segments, key)
        if not reports:
            raise CommandError("no segment found in what was given")
        problems = [f"{report.path.name}: {problem}" for report in reports for problem in report.problems] + joined
        for problem in problems:
            self.stdout.write(printable(problem))
        if problems:
            self.stdout.write(f"Segments NOT verified: {len(problems)} problem(s).")
            sys.exit(1)
        positions = sum(report.positions for report in reports)
        self.stdout.write(
            f"Segments verified: {len(reports)} segment(s), {positions} chain positions, signatures valid."
        )
