import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.signing import fingerprint, private_key_pem, public_key_pem


class Command(BaseCommand):
    help = "Write a new Ed25519 key pair for signed digests and exports (keep the private key out of the repository)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--out", required=True, help="Directory to write audit-signing.key and audit-signing.pub to."
        )
        parser.add_argument("--force", action="store_true", help="Replace an existing key pair.")

    def handle(self, *args: Any, out: str, force: bool, **options: Any) -> None:
        directory = Path(out)
        private_path, public_path = directory / "audit-signing.key", directory / "audit-signing.pub"
        if private_path.exists() and not force:
            raise CommandError(
                f"{private_path} exists; pass --force to replace it "
                "(old signatures verify only with the old public key)"
            )
        directory.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        # Created with owner-only permissions: the key is never readable by others, not even for a moment.
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # The mode given to open() applies only to a new file; a replaced key must lose any wider mode too.
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(private_key_pem(key))
        public_path.write_bytes(public_key_pem(key.public_key()))
        self.stdout.write(f"Private key: {private_path}\nPublic key:  {public_path}")
        self.stdout.write(f"Fingerprint: {fingerprint(key.public_key())}")
        self.stdout.write(f"Set AUDIT_SIGNING_KEY_FILE={private_path.resolve()}")
