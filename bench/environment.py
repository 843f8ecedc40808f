"""What every benchmark sets up before Django starts: a fresh database and a throw-away signing key."""

import atexit
import os
import shutil
import tempfile
from urllib.parse import urlparse


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(database_url: str) -> str:
    """Drop and re-create the database of ``database_url`` and point the project at it; returns a directory for
    the signing key (``audit_keygen --out``), removed when the benchmark ends: a private key is not left behind."""
    recreate_database(database_url)
    keys = tempfile.mkdtemp(prefix="bench-keys-")
    atexit.register(shutil.rmtree, keys, ignore_errors=True)
    os.environ["DATABASE_URL"] = database_url
    os.environ["AUDIT_SIGNING_KEY_FILE"] = f"{keys}/audit-signing.key"
    return keys
