"""Fixtures of the retention tests (archive and legal holds): signing keys, an archive directory, an old trail."""

from pathlib import Path
from typing import Any

import pytest

from audit import privacy
from tests.audit.archive_helpers import Keys, Trail, make_keys, old_trail


@pytest.fixture(autouse=True)
def _fresh_subject_key_cache() -> None:
    """Each test starts with no subject keys cached: a committed test's cache would outlive its database rows, and
    the next test's users get the same ids."""
    privacy._writer_keys.clear()


@pytest.fixture
def keys(tmp_path: Path, settings: Any) -> Keys:
    return make_keys(tmp_path / "keys", settings)


@pytest.fixture
def archive_dir(tmp_path: Path, settings: Any) -> Path:
    settings.AUDIT_ARCHIVE_DIR = str(tmp_path / "archive")
    return tmp_path / "archive"


@pytest.fixture
def trail(db: Any, keys: Keys, archive_dir: Path) -> Trail:
    return old_trail()
